package waypoint

import (
	"context"
	"fmt"
	"net/netip"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/translate"
)

// wantStatus is the status the reconciler wants on a Gateway: conditions without times, which
// setStatus merges into the current ones.
type wantStatus struct {
	conditions []metav1.Condition
	listeners  map[gatewayv1.SectionName][]metav1.Condition
	addresses  []gatewayv1.GatewayStatusAddress
}

func cond(t string, ok bool, reason, msg string) metav1.Condition {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	return metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg}
}

// listenerConds are a listener's conditions, as istiod writes them for a waypoint.
func listenerConds(accepted bool, msg string) []metav1.Condition {
	acc := cond(string(gatewayv1.ListenerConditionAccepted), true, string(gatewayv1.ListenerReasonAccepted), "No errors found")
	if !accepted {
		acc = cond(string(gatewayv1.ListenerConditionAccepted), false, string(gatewayv1.ListenerReasonUnsupportedProtocol), msg)
	}
	return []metav1.Condition{
		acc,
		cond(string(gatewayv1.ListenerConditionConflicted), false, string(gatewayv1.ListenerReasonNoConflicts), "No errors found"),
		cond(string(gatewayv1.ListenerConditionProgrammed), accepted, string(gatewayv1.ListenerReasonProgrammed), "No errors found"),
		cond(string(gatewayv1.ListenerConditionResolvedRefs), true, string(gatewayv1.ListenerReasonResolvedRefs), "No errors found"),
	}
}

// invalidStatus: a Gateway of the waypoint class whose listeners are wrong is not deployed.
func invalidStatus(gw *gatewayv1.Gateway) wantStatus {
	w := wantStatus{listeners: map[gatewayv1.SectionName][]metav1.Condition{}}
	w.conditions = []metav1.Condition{
		cond(string(gatewayv1.GatewayConditionAccepted), false, string(gatewayv1.GatewayReasonListenersNotValid), translate.ErrWaypointListeners),
		cond(string(gatewayv1.GatewayConditionProgrammed), false, string(gatewayv1.GatewayReasonInvalid), "The waypoint is not deployed: "+translate.ErrWaypointListeners),
	}
	for _, l := range gw.Spec.Listeners {
		w.listeners[l.Name] = listenerConds(false, translate.ErrWaypointListeners)
	}
	return w
}

// deployedStatus: Programmed once the Deployment has an available replica and the Service a
// cluster IP. failed is what went wrong writing the objects, if anything.
func deployedStatus(gw *gatewayv1.Gateway, dep *appsv1.Deployment, svc *corev1.Service, failed error) wantStatus {
	w := wantStatus{listeners: map[gatewayv1.SectionName][]metav1.Condition{}}
	for _, l := range gw.Spec.Listeners {
		w.listeners[l.Name] = listenerConds(true, "")
	}
	accepted := cond(string(gatewayv1.GatewayConditionAccepted), true, string(gatewayv1.GatewayReasonAccepted), "Resource accepted")
	var ip string
	if svc != nil {
		if a, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil {
			ip = a.String()
			t := gatewayv1.IPAddressType
			w.addresses = []gatewayv1.GatewayStatusAddress{{Type: &t, Value: ip}}
		}
	}
	programmed := string(gatewayv1.GatewayConditionProgrammed)
	var p metav1.Condition
	switch {
	case failed != nil:
		p = cond(programmed, false, string(gatewayv1.GatewayReasonInvalid), fmt.Sprintf("Failed to deploy the waypoint: %v", failed))
	case dep == nil:
		p = cond(programmed, false, string(gatewayv1.GatewayReasonPending), fmt.Sprintf("Deployment %s/%s does not exist yet", gw.Namespace, gw.Name))
	case svc == nil || ip == "":
		p = cond(programmed, false, string(gatewayv1.GatewayReasonAddressNotAssigned), fmt.Sprintf("Service %s/%s has no cluster IP yet", gw.Namespace, gw.Name))
	case dep.Status.AvailableReplicas < 1:
		p = cond(programmed, false, string(gatewayv1.GatewayReasonPending), fmt.Sprintf("Deployment %s/%s has no available replica yet (%d of %d ready)", gw.Namespace, gw.Name, dep.Status.ReadyReplicas, dep.Status.Replicas))
	default:
		p = cond(programmed, true, string(gatewayv1.GatewayReasonProgrammed), fmt.Sprintf("Resource programmed, assigned to service(s) %s.%s.svc:%d", gw.Name, gw.Namespace, api.WaypointPort))
	}
	w.conditions = []metav1.Condition{accepted, p}
	return w
}

// apply returns gw's status with want merged in (conditions keep their transition time while
// their status stays).
func (w wantStatus) apply(gw *gatewayv1.Gateway) gatewayv1.GatewayStatus {
	st := *gw.Status.DeepCopy()
	for _, c := range w.conditions {
		c.ObservedGeneration = gw.Generation
		meta.SetStatusCondition(&st.Conditions, c)
	}
	st.Addresses = w.addresses
	var ls []gatewayv1.ListenerStatus
	for _, l := range gw.Spec.Listeners {
		cur := gatewayv1.ListenerStatus{Name: l.Name, SupportedKinds: []gatewayv1.RouteGroupKind{}}
		for _, old := range st.Listeners {
			if old.Name == l.Name {
				cur = *old.DeepCopy()
			}
		}
		if cur.SupportedKinds == nil {
			cur.SupportedKinds = []gatewayv1.RouteGroupKind{}
		}
		for _, c := range w.listeners[l.Name] {
			c.ObservedGeneration = gw.Generation
			meta.SetStatusCondition(&cur.Conditions, c)
		}
		ls = append(ls, cur)
	}
	st.Listeners = ls
	return st
}

// writeStatus updates gw's status when want changes it; on a conflict (the informer's copy
// was stale) it retries once with a fresh copy.
func (r *Reconciler) writeStatus(ctx context.Context, gw *gatewayv1.Gateway, want wantStatus) error {
	for attempt := 0; ; attempt++ {
		st := want.apply(gw)
		if apiequality.Semantic.DeepEqual(st, gw.Status) {
			return nil
		}
		next := gw.DeepCopy()
		next.Status = st
		_, err := r.o.Gateway.GatewayV1().Gateways(gw.Namespace).UpdateStatus(ctx, next, metav1.UpdateOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsConflict(err) || attempt > 0 {
			return fmt.Errorf("status: %w", err)
		}
		if gw, err = r.o.Gateway.GatewayV1().Gateways(gw.Namespace).Get(ctx, gw.Name, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("status: %w", err)
		}
	}
}

// ensureClass creates the GatewayClass istio-waypoint when it is missing and, when it is
// Weft's (controllerName istio.io/mesh-controller), marks it Accepted.
func (r *Reconciler) ensureClass(ctx context.Context) error {
	c := r.o.Gateway.GatewayV1().GatewayClasses()
	gc, err := c.Get(ctx, api.WaypointGatewayClass, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		gc, err = c.Create(ctx, &gatewayv1.GatewayClass{
			ObjectMeta: metav1.ObjectMeta{Name: api.WaypointGatewayClass, Labels: map[string]string{LabelManagedBy: ManagedBy}},
			Spec: gatewayv1.GatewayClassSpec{
				ControllerName: api.WaypointController,
				Description:    ptr("The waypoint proxies of the Weft mesh (Istio ambient's istio-waypoint class)"),
			},
		}, metav1.CreateOptions{})
		if err == nil {
			r.log.Info("waypoint GatewayClass created", "name", api.WaypointGatewayClass)
		}
	}
	if err != nil {
		return fmt.Errorf("GatewayClass %s: %w", api.WaypointGatewayClass, err)
	}
	if gc.Spec.ControllerName != api.WaypointController {
		return nil // someone else's
	}
	st := gc.Status.DeepCopy()
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: string(gatewayv1.GatewayClassConditionStatusAccepted), Status: metav1.ConditionTrue,
		Reason: string(gatewayv1.GatewayClassReasonAccepted), Message: "Handled by Weft controller", ObservedGeneration: gc.Generation,
	})
	if apiequality.Semantic.DeepEqual(*st, gc.Status) {
		return nil
	}
	next := gc.DeepCopy()
	next.Status = *st
	if _, err := c.UpdateStatus(ctx, next, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("GatewayClass %s status: %w", api.WaypointGatewayClass, err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

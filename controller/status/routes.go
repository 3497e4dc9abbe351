package status

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	metav1alpha1 "istio.io/api/meta/v1alpha1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/envoy"
	"github.com/weftmesh/weft/controller/translate"
)

// Route status: the verdict of the waypoint translation (controller/envoy) on each
// VirtualService, DestinationRule and HTTPRoute of a namespace with a waypoint.
//
//   - VirtualService and DestinationRule: one IstioCondition of type WaypointAccepted, as
//     istiod writes on AuthorizationPolicies bound to a waypoint: status True, reason
//     Accepted when it translated whole; reason PartiallyInvalid when parts were dropped or
//     ignored, the message listing each problem (field, what was done, the fix) — the rest
//     of the object works. istioctl analyze (IST0171) reports PartiallyInvalid.
//   - HTTPRoute: Gateway API RouteStatus, one parents[] entry per Service parentRef (GAMMA),
//     controllerName istio.io/mesh-controller: Accepted True/Accepted, or False/NoMatchingParent
//     for a parentRef that cannot be used; ResolvedRefs True/ResolvedRefs; and
//     PartiallyInvalid True/UnsupportedValue listing the problems when there are any. Parent
//     entries of other controllers are kept.

// ConditionWaypointAccepted is the condition type written on VirtualServices and
// DestinationRules.
const ConditionWaypointAccepted = translate.ConditionWaypointAccepted

// RouteKey names a VirtualService, DestinationRule or HTTPRoute.
type RouteKey struct{ Kind, Namespace, Name string }

func (k RouteKey) String() string { return k.Kind + " " + k.Namespace + "/" + k.Name }

// RouteVerdict is the translation's verdict on one object.
type RouteVerdict struct {
	Generation int64
	// Problems are the problems' texts (envoy.Problem without kind and name), sorted.
	Problems []string
	// Parents are an HTTPRoute's Service parentRefs; BadParents the indexes of those that
	// cannot be used.
	Parents    []gatewayv1.ParentReference
	BadParents []int
}

func (v RouteVerdict) equal(o RouteVerdict) bool {
	return v.Generation == o.Generation && slices.Equal(v.Problems, o.Problems) && slices.Equal(v.BadParents, o.BadParents) &&
		slices.EqualFunc(v.Parents, o.Parents, func(a, b gatewayv1.ParentReference) bool { return parentKey(a) == parentKey(b) })
}

// RouteVerdicts computes the verdicts on the VirtualServices, DestinationRules and HTTPRoutes
// of in (one waypoint namespace) from the problems of its translation.
func RouteVerdicts(in envoy.Input, problems []envoy.Problem) map[RouteKey]RouteVerdict {
	out := map[RouteKey]RouteVerdict{}
	for _, vs := range in.VirtualServices {
		out[RouteKey{"VirtualService", vs.Namespace, vs.Name}] = RouteVerdict{Generation: vs.Generation}
	}
	for _, dr := range in.DestinationRules {
		out[RouteKey{"DestinationRule", dr.Namespace, dr.Name}] = RouteVerdict{Generation: dr.Generation}
	}
	for _, hr := range in.HTTPRoutes {
		v := RouteVerdict{Generation: hr.Generation}
		for _, p := range hr.Spec.ParentRefs {
			if p.Kind != nil && *p.Kind == "Service" && (p.Group == nil || *p.Group == "" || *p.Group == "core") {
				v.Parents = append(v.Parents, p)
			}
		}
		if len(v.Parents) == 0 {
			continue // not a mesh route: another controller's
		}
		out[RouteKey{"HTTPRoute", hr.Namespace, hr.Name}] = v
	}
	for _, p := range problems {
		k := RouteKey{p.Kind, p.Namespace, p.Name}
		v, ok := out[k]
		if !ok {
			continue
		}
		msg := p.Field + ": " + p.Message
		if p.Fix != "" {
			msg += " (fix: " + p.Fix + ")"
		}
		v.Problems = append(v.Problems, msg)
		if p.Kind == "HTTPRoute" {
			var i int
			if _, err := fmt.Sscanf(p.Field, "spec.parentRefs[%d]", &i); err == nil && !slices.Contains(v.BadParents, i) {
				v.BadParents = append(v.BadParents, i)
			}
		}
		out[k] = v
	}
	for k, v := range out {
		slices.Sort(v.Problems)
		v.Problems = slices.Compact(v.Problems)
		slices.Sort(v.BadParents)
		out[k] = v
	}
	return out
}

// RouteOptions configure a RouteWriter.
type RouteOptions struct {
	Istio   istioclient.Interface
	Gateway gatewayclient.Interface // nil: HTTPRoutes are not written
	// Interval is the shortest time between two rounds of writes; zero means one second.
	// After a failed round the next waits longer, up to MaxBackoff (zero: one minute).
	Interval, MaxBackoff time.Duration
	Logger               *slog.Logger
}

// RouteWriter writes the verdicts on VirtualServices, DestinationRules and HTTPRoutes,
// coalesced in the background like Writer. An object is read and written only when its
// verdict differs from the last one written (after a restart: once).
type RouteWriter struct {
	o RouteOptions
	c *coalescer[map[RouteKey]RouteVerdict]

	written map[RouteKey]RouteVerdict // used by Run only
}

// NewRouteWriter returns a RouteWriter; start it with Run.
func NewRouteWriter(o RouteOptions) *RouteWriter {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &RouteWriter{o: o, c: newCoalescer[map[RouteKey]RouteVerdict](o.Interval, o.MaxBackoff), written: map[RouteKey]RouteVerdict{}}
}

// Update makes v the verdicts to write; it does not block and does not modify v.
func (w *RouteWriter) Update(v map[RouteKey]RouteVerdict) { w.c.update(v) }

// Run writes until ctx is done.
func (w *RouteWriter) Run(ctx context.Context) { w.c.run(ctx, w.sync) }

// sync writes every verdict not written yet; it reports whether all writes succeeded.
func (w *RouteWriter) sync(ctx context.Context, desired map[RouteKey]RouteVerdict) bool {
	for k := range w.written {
		if _, ok := desired[k]; !ok {
			delete(w.written, k)
		}
	}
	keys := slices.SortedFunc(maps.Keys(desired), func(a, b RouteKey) int { return strings.Compare(a.String(), b.String()) })
	ok := true
	for _, k := range keys {
		if ctx.Err() != nil {
			return ok
		}
		v := desired[k]
		if prev, found := w.written[k]; found && prev.equal(v) {
			continue
		}
		err := w.write(ctx, k, v, time.Now())
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			level := slog.LevelWarn
			if apierrors.IsConflict(err) {
				level = slog.LevelDebug
			}
			w.o.Logger.Log(ctx, level, "write status", "object", k.String(), "err", err)
			ok = false
			continue
		}
		w.written[k] = v
	}
	return ok
}

func (w *RouteWriter) write(ctx context.Context, k RouteKey, v RouteVerdict, now time.Time) error {
	switch k.Kind {
	case "VirtualService":
		c := w.o.Istio.NetworkingV1().VirtualServices(k.Namespace)
		cur, err := c.Get(ctx, k.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		next := cur.DeepCopy()
		if !setIstioCondition(&next.Status.Conditions, istioCondition(v), now) {
			return nil
		}
		_, err = c.UpdateStatus(ctx, next, metav1.UpdateOptions{})
		return err
	case "DestinationRule":
		c := w.o.Istio.NetworkingV1().DestinationRules(k.Namespace)
		cur, err := c.Get(ctx, k.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		next := cur.DeepCopy()
		if !setIstioCondition(&next.Status.Conditions, istioCondition(v), now) {
			return nil
		}
		_, err = c.UpdateStatus(ctx, next, metav1.UpdateOptions{})
		return err
	case "HTTPRoute":
		if w.o.Gateway == nil {
			return nil
		}
		c := w.o.Gateway.GatewayV1().HTTPRoutes(k.Namespace)
		cur, err := c.Get(ctx, k.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		next := cur.DeepCopy()
		if !setRouteParents(&next.Status.RouteStatus, v, now) {
			return nil
		}
		_, err = c.UpdateStatus(ctx, next, metav1.UpdateOptions{})
		return err
	}
	return fmt.Errorf("status: unknown kind %q", k.Kind)
}

// istioCondition is the WaypointAccepted condition of a VirtualService or DestinationRule.
func istioCondition(v RouteVerdict) *metav1alpha1.IstioCondition {
	c := &metav1alpha1.IstioCondition{Type: ConditionWaypointAccepted, Status: string(metav1.ConditionTrue),
		Reason: translate.ReasonAccepted, Message: "translated for the namespace's waypoint", ObservedGeneration: v.Generation}
	if len(v.Problems) > 0 {
		c.Reason = translate.ReasonPartiallyInvalid
		c.Message = "the rest is in force; not translated: " + strings.Join(v.Problems, "; ")
	}
	return c
}

// setIstioCondition puts c into conds (replacing one of its type); it reports whether
// anything changed. The transition time changes only with the status.
func setIstioCondition(conds *[]*metav1alpha1.IstioCondition, c *metav1alpha1.IstioCondition, now time.Time) bool {
	c.LastTransitionTime = timestamppb.New(now)
	for i, x := range *conds {
		if x == nil || x.Type != c.Type {
			continue
		}
		if x.Status == c.Status && x.Reason == c.Reason && x.Message == c.Message && x.ObservedGeneration == c.ObservedGeneration {
			return false
		}
		if x.Status == c.Status && x.LastTransitionTime != nil {
			c.LastTransitionTime = x.LastTransitionTime
		}
		(*conds)[i] = c
		return true
	}
	*conds = append(*conds, c)
	return true
}

func parentKey(p gatewayv1.ParentReference) string {
	s := string(p.Name)
	if p.Namespace != nil {
		s = string(*p.Namespace) + "/" + s
	}
	if p.SectionName != nil {
		s += "#" + string(*p.SectionName)
	}
	if p.Port != nil {
		s += fmt.Sprintf(":%d", *p.Port)
	}
	return s
}

// setRouteParents replaces this controller's parents[] entries with the verdict's; it
// reports whether anything changed.
func setRouteParents(rs *gatewayv1.RouteStatus, v RouteVerdict, now time.Time) bool {
	const controller = gatewayv1.GatewayController(api.WaypointController)
	var ours []gatewayv1.RouteParentStatus
	others := rs.Parents[:0:0]
	for _, p := range rs.Parents {
		if p.ControllerName == controller {
			ours = append(ours, p)
		} else {
			others = append(others, p)
		}
	}
	var next []gatewayv1.RouteParentStatus
	for i, ref := range v.Parents {
		accepted := metav1.Condition{Type: string(gatewayv1.RouteConditionAccepted), Status: metav1.ConditionTrue, Reason: string(gatewayv1.RouteReasonAccepted), Message: "Route was valid"}
		if slices.Contains(v.BadParents, i) {
			accepted.Status, accepted.Reason = metav1.ConditionFalse, string(gatewayv1.RouteReasonNoMatchingParent)
			accepted.Message = "parentRef cannot be used: " + strings.Join(v.Problems, "; ")
		}
		conds := []metav1.Condition{accepted,
			{Type: string(gatewayv1.RouteConditionResolvedRefs), Status: metav1.ConditionTrue, Reason: string(gatewayv1.RouteReasonResolvedRefs), Message: "All references resolved"}}
		if len(v.Problems) > 0 {
			conds = append(conds, metav1.Condition{Type: string(gatewayv1.RouteConditionPartiallyInvalid), Status: metav1.ConditionTrue,
				Reason: string(gatewayv1.RouteReasonUnsupportedValue), Message: "not translated: " + strings.Join(v.Problems, "; ")})
		}
		var prev []metav1.Condition
		for _, o := range ours {
			if parentKey(o.ParentRef) == parentKey(ref) {
				prev = o.Conditions
			}
		}
		for j := range conds {
			conds[j].ObservedGeneration = v.Generation
			conds[j].LastTransitionTime = metav1.NewTime(now)
			for _, p := range prev {
				if p.Type == conds[j].Type && p.Status == conds[j].Status {
					conds[j].LastTransitionTime = p.LastTransitionTime
				}
			}
		}
		next = append(next, gatewayv1.RouteParentStatus{ParentRef: ref, ControllerName: controller, Conditions: conds})
	}
	if sameParents(ours, next) {
		return false
	}
	rs.Parents = append(others, next...)
	return true
}

func sameParents(a, b []gatewayv1.RouteParentStatus) bool {
	return slices.EqualFunc(a, b, func(x, y gatewayv1.RouteParentStatus) bool {
		return parentKey(x.ParentRef) == parentKey(y.ParentRef) && slices.EqualFunc(x.Conditions, y.Conditions, func(c, d metav1.Condition) bool {
			return c.Type == d.Type && c.Status == d.Status && c.Reason == d.Reason && c.Message == d.Message && c.ObservedGeneration == d.ObservedGeneration
		})
	})
}

package ca

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
)

// authorizer decides which identities a caller may obtain.
type authorizer struct {
	pods PodLister
	// client, when set, confirms a miss of pods with the apiserver: a pod scheduled a moment
	// ago may not have reached the informer yet.
	client           kubernetes.Interface
	agentNS, agentSA string
	now              func() time.Time
}

// denial is a refused request: who asked for what, and why.
type denial struct {
	caller *Caller
	want   string // namespace/service account
	reason string
}

func (d *denial) Error() string {
	return fmt.Sprintf("%s may not obtain the identity of service account %s: %s", d.caller, d.want, d.reason)
}

// GRPCStatus makes a denial a PERMISSION_DENIED status error.
func (d *denial) GRPCStatus() *status.Status {
	return status.New(codes.PermissionDenied, d.Error())
}

// authorize returns nil when caller may obtain the identity of service account ns/sa, a
// *denial when it may not, and an UNAVAILABLE status error when it cannot tell.
//
// The node agent may obtain the identity of a service account while a pod of it is scheduled on
// the agent's own node (not terminated, not deleted past its grace period); any other caller
// only its own identity.
func (a *authorizer) authorize(ctx context.Context, caller *Caller, ns, sa string) error {
	deny := func(format string, args ...any) error {
		return &denial{caller: caller, want: ns + "/" + sa, reason: fmt.Sprintf(format, args...)}
	}
	if caller.Namespace != a.agentNS || caller.ServiceAccount != a.agentSA {
		if caller.Namespace == ns && caller.ServiceAccount == sa {
			return nil
		}
		return deny("a caller other than the node agent (%s/%s) may obtain only its own identity", a.agentNS, a.agentSA)
	}
	if caller.NodeName == "" {
		return deny("the node agent's token does not name a node (it must be bound to the agent's pod, which must be scheduled)")
	}
	pods, err := a.pods.PodsOnNode(caller.NodeName)
	if err != nil {
		return status.Errorf(codes.Unavailable, "listing pods on node %s: %v", caller.NodeName, err)
	}
	found, ok := a.match(pods, caller.NodeName, ns, sa)
	if !ok && a.client != nil {
		list, err := a.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{
			FieldSelector: fields.AndSelectors(
				fields.OneTermEqualSelector("spec.nodeName", caller.NodeName),
				fields.OneTermEqualSelector("spec.serviceAccountName", sa),
			).String(),
		})
		if err != nil {
			return status.Errorf(codes.Unavailable, "listing pods of %s/%s on node %s: %v", ns, sa, caller.NodeName, err)
		}
		live := make([]*corev1.Pod, len(list.Items))
		for i := range list.Items {
			live[i] = &list.Items[i]
		}
		var liveFound bool
		liveFound, ok = a.match(live, caller.NodeName, ns, sa)
		found = found || liveFound
	}
	switch {
	case ok:
		return nil
	case found:
		return deny("the pods of service account %s/%s on node %s have terminated or are being deleted", ns, sa, caller.NodeName)
	default:
		return deny("no pod of service account %s/%s is scheduled on node %s", ns, sa, caller.NodeName)
	}
}

// match reports whether pods hold a pod of service account ns/sa on node (found), and whether
// one of them is live (ok).
func (a *authorizer) match(pods []*corev1.Pod, node, ns, sa string) (found, ok bool) {
	now := a.now()
	for _, p := range pods {
		if p.Spec.NodeName != node || p.Namespace != ns || podServiceAccount(p) != sa {
			continue
		}
		found = true
		if live(p, now) {
			return true, true
		}
	}
	return found, false
}

// live reports whether pod has not terminated and is not deleted past its grace period.
func live(pod *corev1.Pod, now time.Time) bool {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false
	}
	// The apiserver sets deletionTimestamp to the deletion time plus the grace period.
	return pod.DeletionTimestamp == nil || now.Before(pod.DeletionTimestamp.Time)
}

func podServiceAccount(pod *corev1.Pod) string {
	if pod.Spec.ServiceAccountName == "" {
		return "default"
	}
	return pod.Spec.ServiceAccountName
}

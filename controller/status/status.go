// Package status writes the controller's verdict on each AuthorizationPolicy into the policy's
// status, as Istio's ambient controller does: one condition, ZtunnelAccepted (enforced at L4)
// or WaypointAccepted (targetRefs), with reason, message and observedGeneration
// ([translate.PolicyCondition]). Conditions of other types, written by others, are kept.
//
// The push loop hands over each translation's conditions with [Writer.Update], which never
// blocks; [Writer.Run] writes in the background, coalescing updates (at most one round per
// Interval), and writes a policy only when its condition differs from the one it carries.
package status

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	metav1alpha1 "istio.io/api/meta/v1alpha1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/controller/translate"
)

// Options configure a Writer.
type Options struct {
	Client istioclient.Interface
	// Get reads a policy, normally from the informer's cache; nil reads through Client.
	Get func(namespace, name string) (*securityv1.AuthorizationPolicy, error)
	// Interval is the shortest time between two rounds of writes; zero means one second. After
	// a failed write the next round waits longer, up to MaxBackoff (zero: one minute).
	Interval, MaxBackoff time.Duration
	Logger               *slog.Logger
}

// Writer writes AuthorizationPolicy status conditions.
type Writer struct {
	o Options
	c *coalescer[map[string]translate.PolicyCondition] // by translate.PolicyKey; never modified

	// basedOn holds, per policy written, the resourceVersion the write replaced: while Get
	// still returns that version (a cache not yet updated), the policy is not written again.
	basedOn map[string]string
}

// New returns a Writer; start it with Run.
func New(o Options) *Writer {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Get == nil {
		o.Get = func(namespace, name string) (*securityv1.AuthorizationPolicy, error) {
			return o.Client.SecurityV1().AuthorizationPolicies(namespace).Get(context.Background(), name, metav1.GetOptions{})
		}
	}
	return &Writer{o: o, c: newCoalescer[map[string]translate.PolicyCondition](o.Interval, o.MaxBackoff), basedOn: map[string]string{}}
}

// Update makes conds (by translate.PolicyKey) the conditions to write. It does not block and
// does not modify conds; a later Update replaces an earlier one not yet written.
func (w *Writer) Update(conds map[string]translate.PolicyCondition) { w.c.update(conds) }

// Run writes conditions until ctx is done.
func (w *Writer) Run(ctx context.Context) { w.c.run(ctx, w.sync) }

// sync writes every condition that differs from the policy's; it reports whether all writes
// succeeded.
func (w *Writer) sync(ctx context.Context, desired map[string]translate.PolicyCondition) bool {
	ok := true
	for key := range w.basedOn {
		if _, found := desired[key]; !found {
			delete(w.basedOn, key)
		}
	}
	keys := make([]string, 0, len(desired))
	for k := range desired {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		if ctx.Err() != nil {
			return ok
		}
		namespace, name, _ := strings.Cut(key, "/")
		cur, err := w.o.Get(namespace, name)
		if apierrors.IsNotFound(err) {
			delete(w.basedOn, key)
			continue
		}
		if err != nil {
			w.o.Logger.Warn("read AuthorizationPolicy for its status", "policy", key, "err", err)
			ok = false
			continue
		}
		if rv, found := w.basedOn[key]; found && rv == cur.ResourceVersion {
			continue // our last write has not reached the cache yet
		}
		next := apply(cur, desired[key], time.Now())
		if next == nil {
			delete(w.basedOn, key)
			continue
		}
		written, err := w.o.Client.SecurityV1().AuthorizationPolicies(namespace).UpdateStatus(ctx, next, metav1.UpdateOptions{})
		if err != nil {
			if !apierrors.IsNotFound(err) {
				level := slog.LevelWarn
				if apierrors.IsConflict(err) {
					level = slog.LevelDebug // changed meanwhile: the next round retries
				}
				w.o.Logger.Log(ctx, level, "write AuthorizationPolicy status", "policy", key, "err", err)
				ok = false
			}
			continue
		}
		if written.ResourceVersion != cur.ResourceVersion {
			w.basedOn[key] = cur.ResourceVersion
		}
		w.o.Logger.Debug("wrote AuthorizationPolicy status", "policy", key, "type", desired[key].Type, "reason", desired[key].Reason)
	}
	return ok
}

// apply returns a copy of cur whose status carries c, or nil when cur carries it already. The
// other condition type this controller owns is removed; other conditions are kept. The
// transition time changes only when the condition's status does.
func apply(cur *securityv1.AuthorizationPolicy, c translate.PolicyCondition, now time.Time) *securityv1.AuthorizationPolicy {
	status := string(metav1.ConditionFalse)
	if c.Status {
		status = string(metav1.ConditionTrue)
	}
	out := cur.DeepCopy()
	var prev *metav1alpha1.IstioCondition
	changed := false
	conds := out.Status.Conditions[:0:0]
	for _, x := range out.Status.Conditions {
		switch {
		case x == nil:
		case x.Type == c.Type:
			prev = x
		case x.Type == translate.ConditionZtunnelAccepted || x.Type == translate.ConditionWaypointAccepted:
			changed = true // ours, no longer true
		default:
			conds = append(conds, x)
		}
	}
	if prev != nil && !changed && prev.Status == status && prev.Reason == c.Reason &&
		prev.Message == c.Message && prev.ObservedGeneration == c.ObservedGeneration {
		return nil
	}
	transition := timestamppb.New(now)
	if prev != nil && prev.Status == status && prev.LastTransitionTime != nil {
		transition = prev.LastTransitionTime
	}
	out.Status.Conditions = append(conds, &metav1alpha1.IstioCondition{
		Type:               c.Type,
		Status:             status,
		LastTransitionTime: transition,
		Reason:             c.Reason,
		Message:            c.Message,
		ObservedGeneration: c.ObservedGeneration,
	})
	return out
}

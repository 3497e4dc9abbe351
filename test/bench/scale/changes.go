package scale

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Change kinds.
const (
	KindPodReady      = "pod-ready"
	KindPodReadyLocal = "pod-ready-local"
	KindPodAdd        = "pod-add"
	KindServicePort   = "service-port"
	KindNamespace     = "namespace-label"
)

// Kinds lists the change kinds in the order they take turns, with what they do.
var Kinds = []struct{ Kind, Description string }{
	{KindPodReady, "the Ready condition of a pod in an ambient namespace flips to False, or back to True (every other change of this kind; pod status update)"},
	{KindPodReadyLocal, "the same for a pod in a namespace outside the mesh: only its own node's agent receives it"},
	{KindPodAdd, "a new pod of an ambient service: created, status posted (IP, Ready) and added to the service's EndpointSlice, as kubelet and kube-controller-manager would"},
	{KindServicePort, "a service in an ambient namespace gains a TCP port (Service update)"},
	{KindNamespace, "an ambient namespace loses its istio.io/dataplane-mode=ambient label, or gets it back (every other change of this kind): all its pods and services leave or join the mesh"},
}

// Change is one change to measure: the model once it is made (with the objects the benchmark
// writes) and the writes.
type Change struct {
	Kind   string
	Detail string
	// After is the model with the change made.
	After *Model
	// Write makes the change in the apiserver and returns the objects as the apiserver
	// returned them, to store in the model.
	Write func(ctx context.Context) (func(*Model), error)
}

// Changer makes changes to a cluster.
type Changer struct {
	C      *Cluster
	Rand   *rand.Rand
	added  int
	ports  int
	nsOff  string            // namespace whose ambient label the last namespace change removed
	podOff map[string]string // by kind: the pod the last readiness change made not Ready
}

// Next returns a change of kind against the current model.
func (ch *Changer) Next(kind string) (*Change, error) {
	m := ch.C.Model
	switch kind {
	case KindPodReady, KindPodReadyLocal:
		// Every other change of a kind makes the pod of the one before Ready again.
		var pod *corev1.Pod
		if key := ch.podOff[kind]; key != "" {
			pod = m.Pods[key]
			delete(ch.podOff, kind)
		} else {
			pod = pickFrom(ch.Rand, ch.appPods(m, kind == KindPodReady))
			if pod == nil {
				return nil, fmt.Errorf("%s: no pod to change", kind)
			}
			if ch.podOff == nil {
				ch.podOff = map[string]string{}
			}
			ch.podOff[kind] = Key(pod.Namespace, pod.Name)
		}
		ready := !PodReady(pod)
		after := m.Clone()
		after.PutPod(WithReady(pod, ready))
		return &Change{Kind: kind, Detail: fmt.Sprintf("pod %s/%s on %s Ready=%t", pod.Namespace, pod.Name, pod.Spec.NodeName, ready), After: after,
			Write: func(ctx context.Context) (func(*Model), error) {
				p, err := ch.C.Kube.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, WithReady(pod, ready), metav1.UpdateOptions{})
				if err != nil {
					return nil, err
				}
				return func(m *Model) { m.PutPod(p) }, nil
			}}, nil

	case KindPodAdd:
		svc := ch.pickService(m)
		if svc == nil {
			return nil, fmt.Errorf("%s: no ambient service", kind)
		}
		es := m.Slices[Key(svc.Namespace, svc.Name)]
		if es == nil {
			return nil, fmt.Errorf("%s: service %s/%s has no EndpointSlice", kind, svc.Namespace, svc.Name)
		}
		name := fmt.Sprintf("%s-add-%d", svc.Name, ch.added)
		node := ch.C.Nodes[ch.added%len(ch.C.Nodes)]
		ch.added++
		ipStr, i := ch.C.NextPodIP()
		pod := WithStatus(NewPod(svc.Namespace, svc.Name, name, node), PodIP(i), true)
		after := m.Clone()
		after.PutPod(pod)
		after.PutSlice(WithEndpoint(es, pod))
		return &Change{Kind: kind, Detail: fmt.Sprintf("pod %s/%s on %s, %s", svc.Namespace, name, node, ipStr), After: after,
			Write: func(ctx context.Context) (func(*Model), error) {
				pods := ch.C.Kube.CoreV1().Pods(svc.Namespace)
				created, err := pods.Create(ctx, NewPod(svc.Namespace, svc.Name, name, node), metav1.CreateOptions{})
				if err != nil {
					return nil, err
				}
				p, err := pods.UpdateStatus(ctx, WithStatus(created, PodIP(i), true), metav1.UpdateOptions{})
				if err != nil {
					return nil, err
				}
				s, err := ch.C.Kube.DiscoveryV1().EndpointSlices(svc.Namespace).Update(ctx, WithEndpoint(es, p), metav1.UpdateOptions{})
				if err != nil {
					return nil, err
				}
				return func(m *Model) { m.PutPod(p); m.PutSlice(s) }, nil
			}}, nil

	case KindServicePort:
		svc := ch.pickService(m)
		if svc == nil {
			return nil, fmt.Errorf("%s: no ambient service", kind)
		}
		port := int32(9000 + ch.ports)
		name := fmt.Sprintf("tcp-%d", port)
		ch.ports++
		after := m.Clone()
		after.PutService(WithPort(svc, name, port))
		return &Change{Kind: kind, Detail: fmt.Sprintf("service %s/%s port %d", svc.Namespace, svc.Name, port), After: after,
			Write: func(ctx context.Context) (func(*Model), error) {
				s, err := ch.C.Kube.CoreV1().Services(svc.Namespace).Update(ctx, WithPort(svc, name, port), metav1.UpdateOptions{})
				if err != nil {
					return nil, err
				}
				return func(m *Model) { m.PutService(s) }, nil
			}}, nil

	case KindNamespace:
		var ns *corev1.Namespace
		on := ch.nsOff != ""
		if on {
			ns = m.Namespaces[ch.nsOff]
			ch.nsOff = ""
		} else {
			ns = pickFrom(ch.Rand, ch.appNamespaces(m, true))
			if ns == nil {
				return nil, fmt.Errorf("%s: no ambient namespace", kind)
			}
			ch.nsOff = ns.Name
		}
		after := m.Clone()
		after.PutNamespace(WithAmbient(ns, on))
		detail := fmt.Sprintf("namespace %s: label removed", ns.Name)
		if on {
			detail = fmt.Sprintf("namespace %s: label restored", ns.Name)
		}
		return &Change{Kind: kind, Detail: detail, After: after,
			Write: func(ctx context.Context) (func(*Model), error) {
				n, err := ch.C.Kube.CoreV1().Namespaces().Update(ctx, WithAmbient(ns, on), metav1.UpdateOptions{})
				if err != nil {
					return nil, err
				}
				return func(m *Model) { m.PutNamespace(n) }, nil
			}}, nil
	}
	return nil, fmt.Errorf("unknown change kind %q", kind)
}

// appNamespaces returns the benchmark's namespaces that are (not) ambient now, sorted; the
// namespace whose label a namespace change removed is in neither list.
func (ch *Changer) appNamespaces(m *Model, ambient bool) []*corev1.Namespace {
	var out []*corev1.Namespace
	for _, ns := range m.Namespaces {
		if ns.Labels["weft.dev/scale"] != "app" || ns.Name == ch.nsOff || IsAmbient(ns) != ambient {
			continue
		}
		out = append(out, ns)
	}
	slices.SortFunc(out, func(a, b *corev1.Namespace) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// appPods returns the pods of the namespaces that are (not) ambient now, sorted.
func (ch *Changer) appPods(m *Model, ambient bool) []*corev1.Pod {
	in := map[string]bool{}
	for _, ns := range ch.appNamespaces(m, ambient) {
		in[ns.Name] = true
	}
	var out []*corev1.Pod
	for _, p := range m.Pods {
		if in[p.Namespace] {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b *corev1.Pod) int { return strings.Compare(Key(a.Namespace, a.Name), Key(b.Namespace, b.Name)) })
	return out
}

// pickService returns a random service of an ambient namespace.
func (ch *Changer) pickService(m *Model) *corev1.Service {
	in := map[string]bool{}
	for _, ns := range ch.appNamespaces(m, true) {
		in[ns.Name] = true
	}
	var out []*corev1.Service
	for _, s := range m.Services {
		if in[s.Namespace] {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b *corev1.Service) int {
		return strings.Compare(Key(a.Namespace, a.Name), Key(b.Namespace, b.Name))
	})
	return pickFrom(ch.Rand, out)
}

// pickFrom returns a random element of list (the zero value for none).
func pickFrom[T any](r *rand.Rand, list []T) T {
	var zero T
	if len(list) == 0 {
		return zero
	}
	return list[r.IntN(len(list))]
}

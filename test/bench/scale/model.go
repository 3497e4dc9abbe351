package scale

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/translate"
)

// Names of the objects the benchmark creates.
const (
	AgentNamespace      = "weft-system"
	AgentServiceAccount = "weft-nodeagent"
	// ManagedBy marks the EndpointSlices the benchmark keeps (the services have no selector,
	// so kube-controller-manager leaves them alone).
	ManagedBy = "weft-scale.bench.weft.dev"
	// ServicePort and TargetPort are every service's first port.
	ServicePort = 80
	TargetPort  = 8080
)

// NodeName names node i.
func NodeName(i int) string { return fmt.Sprintf("scale-node-%03d", i) }

// AgentPodName names the node agent's pod of a node.
func AgentPodName(node string) string { return "weft-nodeagent-" + node }

// NamespaceName names namespace i.
func NamespaceName(i int) string { return fmt.Sprintf("scale-%03d", i) }

// ServiceName names service j of a namespace.
func ServiceName(j int) string { return fmt.Sprintf("svc-%03d", j) }

// PodName names pod k of a service.
func PodName(service string, k int) string { return fmt.Sprintf("%s-%d", service, k) }

// Model is the benchmark's copy of the objects the controller translates, as the apiserver
// returned them. Translating it gives what the controller computes from its informers.
type Model struct {
	Namespaces map[string]*corev1.Namespace          // by name
	Pods       map[string]*corev1.Pod                // by namespace/name
	Services   map[string]*corev1.Service            // by namespace/name
	Slices     map[string]*discoveryv1.EndpointSlice // by namespace/name
}

// NewModel returns an empty model.
func NewModel() *Model {
	return &Model{
		Namespaces: map[string]*corev1.Namespace{},
		Pods:       map[string]*corev1.Pod{},
		Services:   map[string]*corev1.Service{},
		Slices:     map[string]*discoveryv1.EndpointSlice{},
	}
}

// Key is the model's key of a namespaced object.
func Key(namespace, name string) string { return namespace + "/" + name }

// Clone returns a model with copies of the maps; the objects are shared (they are replaced,
// never modified).
func (m *Model) Clone() *Model {
	return &Model{
		Namespaces: maps.Clone(m.Namespaces),
		Pods:       maps.Clone(m.Pods),
		Services:   maps.Clone(m.Services),
		Slices:     maps.Clone(m.Slices),
	}
}

// Input returns the model as the translation's input.
func (m *Model) Input() translate.Input {
	return translate.Input{
		Namespaces:     slices.Collect(maps.Values(m.Namespaces)),
		Pods:           slices.Collect(maps.Values(m.Pods)),
		Services:       slices.Collect(maps.Values(m.Services)),
		EndpointSlices: slices.Collect(maps.Values(m.Slices)),
	}
}

// Translate builds the mesh of the model with the controller's default options.
func (m *Model) Translate() *translate.Mesh { return translate.Build(m.Input(), translate.Options{}) }

// PutPod, PutService, PutSlice and PutNamespace store an object.
func (m *Model) PutPod(p *corev1.Pod)         { m.Pods[Key(p.Namespace, p.Name)] = p }
func (m *Model) PutService(s *corev1.Service) { m.Services[Key(s.Namespace, s.Name)] = s }
func (m *Model) PutSlice(s *discoveryv1.EndpointSlice) {
	m.Slices[Key(s.Namespace, s.Name)] = s
}
func (m *Model) PutNamespace(n *corev1.Namespace) { m.Namespaces[n.Name] = n }

// NewNamespace returns an application namespace, labelled ambient or not.
func NewNamespace(name string, ambient bool) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"weft.dev/scale": "app"}}}
	if ambient {
		ns.Labels[api.LabelDataplaneMode] = api.DataplaneModeAmbient
	}
	return ns
}

// NewService returns a ClusterIP service without a selector with one port, http 80 → 8080.
func NewService(namespace, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: "http", Port: ServicePort, TargetPort: intstr.FromInt32(TargetPort), Protocol: corev1.ProtocolTCP}},
		},
	}
}

// NewPod returns a pod of a service bound to node; it never runs (no kubelet).
func NewPod(namespace, service, name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{"app": service, "version": "v1"}},
		Spec: corev1.PodSpec{
			NodeName:                     node,
			ServiceAccountName:           "default",
			AutomountServiceAccountToken: ptr.To(false),
			Containers:                   []corev1.Container{{Name: "app", Image: "registry.invalid/app:1", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: TargetPort}}}},
		},
	}
}

// WithStatus returns a copy of pod with the status a kubelet would post: Running, its IP,
// and the Ready condition.
func WithStatus(pod *corev1.Pod, ip netip.Addr, ready bool) *corev1.Pod {
	p := pod.DeepCopy()
	now := metav1.Now()
	p.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		PodIP:     ip.String(),
		PodIPs:    []corev1.PodIP{{IP: ip.String()}},
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: condition(ready), LastTransitionTime: now},
		},
	}
	return p
}

// WithReady returns a copy of pod whose Ready condition is ready.
func WithReady(pod *corev1.Pod, ready bool) *corev1.Pod {
	p := pod.DeepCopy()
	now := metav1.Now()
	found := false
	for i := range p.Status.Conditions {
		if c := &p.Status.Conditions[i]; c.Type == corev1.PodReady {
			c.Status, c.LastTransitionTime, found = condition(ready), now, true
		}
	}
	if !found {
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: condition(ready), LastTransitionTime: now})
	}
	return p
}

// PodReady reports a pod's Ready condition.
func PodReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func condition(b bool) corev1.ConditionStatus {
	if b {
		return corev1.ConditionTrue
	}
	return corev1.ConditionFalse
}

// NewSlice returns the EndpointSlice of a service over pods (which must have an IP), as
// kube-controller-manager would write it.
func NewSlice(namespace, service string, pods []*corev1.Pod) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: service, Labels: map[string]string{
			discoveryv1.LabelServiceName: service,
			discoveryv1.LabelManagedBy:   ManagedBy,
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](TargetPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, p := range pods {
		es.Endpoints = append(es.Endpoints, endpoint(p))
	}
	return es
}

// WithEndpoint returns a copy of es with pod added.
func WithEndpoint(es *discoveryv1.EndpointSlice, pod *corev1.Pod) *discoveryv1.EndpointSlice {
	c := es.DeepCopy()
	c.Endpoints = append(c.Endpoints, endpoint(pod))
	return c
}

func endpoint(p *corev1.Pod) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{p.Status.PodIP},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(PodReady(p))},
		NodeName:   ptr.To(p.Spec.NodeName),
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
	}
}

// WithPort returns a copy of svc with one more TCP port (numeric target port).
func WithPort(svc *corev1.Service, name string, port int32) *corev1.Service {
	c := svc.DeepCopy()
	c.Spec.Ports = append(c.Spec.Ports, corev1.ServicePort{Name: name, Port: port, TargetPort: intstr.FromInt32(port), Protocol: corev1.ProtocolTCP})
	return c
}

// WithAmbient returns a copy of ns with the ambient label set or removed.
func WithAmbient(ns *corev1.Namespace, on bool) *corev1.Namespace {
	c := ns.DeepCopy()
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	if on {
		c.Labels[api.LabelDataplaneMode] = api.DataplaneModeAmbient
	} else {
		delete(c.Labels, api.LabelDataplaneMode)
	}
	return c
}

// IsAmbient reports whether ns carries the ambient label.
func IsAmbient(ns *corev1.Namespace) bool {
	return ns.Labels[api.LabelDataplaneMode] == api.DataplaneModeAmbient
}

// PodIP returns the i-th pod address, counting from 198.18.0.1 (the harness's pod range).
func PodIP(i int) netip.Addr {
	n := uint32(i + 1)
	return netip.AddrFrom4([4]byte{198, 18, byte(n >> 8), byte(n)})
}

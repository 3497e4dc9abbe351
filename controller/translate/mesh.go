package translate

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"
	discoveryv1 "k8s.io/api/discovery/v1"

	workloadv1 "github.com/weftmesh/weft/api/workload/v1"
)

// Resource is one resource of workload discovery with its version, a digest of its content.
type Resource struct {
	Address *workloadv1.Address
	Version string
}

// Mesh is the translated cluster: every workload, service and authorization policy, and what
// each node receives. It is immutable once built.
type Mesh struct {
	// Resources holds every workload, service and authorization policy by resource name.
	Resources map[string]Resource
	// Warnings are problems in the input that did not stop the translation, each naming the
	// object and the fix.
	Warnings []error
	// PolicyStatus holds the status condition of every AuthorizationPolicy, by
	// PolicyKey(namespace, name).
	PolicyStatus map[string]PolicyCondition
	// Waypoints holds every waypoint (a Gateway of class istio-waypoint with valid listeners)
	// and the Services and workloads bound to it, by WaypointKey(namespace, name).
	Waypoints map[string]*Waypoint

	shared map[string]Resource            // what every node receives
	local  map[string]map[string]Resource // node → its own workloads that are not shared
}

// Build translates in.
func Build(in Input, o Options) *Mesh {
	o = o.withDefaults()
	m := &Mesh{Resources: map[string]Resource{}, PolicyStatus: map[string]PolicyCondition{}, shared: map[string]Resource{}, local: map[string]map[string]Resource{}}
	nsLabels := make(map[string]map[string]string, len(in.Namespaces))
	for _, ns := range in.Namespaces {
		nsLabels[ns.Name] = ns.Labels
	}
	pa := newPeerAuthIndex(in.PeerAuthentications, o.RootNamespace)
	wps := newWaypoints(in, nsLabels, o)
	svcWaypoints := wps.serviceWaypoints(in)
	workloads := map[string]*workloadv1.Workload{}
	for _, pod := range in.Pods {
		w, warnings := workload(pod, nsLabels[pod.Namespace], pa, wps, o)
		m.Warnings = append(m.Warnings, warnings...)
		if w != nil {
			workloads[w.Uid] = w
		}
	}
	known := func(uid string) bool { return workloads[uid] != nil }
	policies := m.authorizations(in, workloads, svcWaypoints, wps.byKey, o)

	slicesBySvc := map[[2]string][]*discoveryv1.EndpointSlice{}
	for _, es := range in.EndpointSlices {
		if name := es.Labels[discoveryv1.LabelServiceName]; name != "" {
			k := [2]string{es.Namespace, name}
			slicesBySvc[k] = append(slicesBySvc[k], es)
		}
	}
	shared := map[string]bool{} // resource names every node receives
	for _, svc := range in.Services {
		s := service(svc, slicesBySvc[[2]string{svc.Namespace, svc.Name}], known, o)
		if s == nil {
			continue
		}
		if !wps.ownService(svc) {
			var wp *Waypoint
			if s.Waypoint, wp = wps.resolve(forService, "Service "+svc.Namespace+"/"+svc.Name, svc.Namespace, svc.Labels); wp != nil {
				wp.Services = append(wp.Services, svc.Namespace+"/"+svc.Name)
			}
		}
		name := ServiceName(s.Namespace, s.Hostname)
		r, err := newResource(&workloadv1.Address{Name: name, Type: &workloadv1.Address_Service{Service: s}})
		if err != nil {
			m.Warnings = append(m.Warnings, err)
			continue
		}
		m.Resources[name] = r
		inMesh := s.Waypoint != nil
		for _, e := range s.Endpoints {
			inMesh = inMesh || workloads[e.WorkloadUid].TunnelProtocol == workloadv1.TunnelProtocol_HBONE
		}
		if inMesh {
			shared[name] = true
			for _, e := range s.Endpoints {
				shared[e.WorkloadUid] = true
			}
		}
	}
	for uid, w := range workloads {
		r, err := newResource(&workloadv1.Address{Name: uid, Type: &workloadv1.Address_Workload{Workload: w}})
		if err != nil {
			m.Warnings = append(m.Warnings, err)
			delete(shared, uid)
			continue
		}
		m.Resources[uid] = r
		if w.TunnelProtocol == workloadv1.TunnelProtocol_HBONE && len(w.Addresses) > 0 {
			shared[uid] = true
		}
	}
	for name := range shared {
		m.shared[name] = m.Resources[name]
	}
	for uid, w := range workloads {
		if _, ok := m.Resources[uid]; !ok || shared[uid] || w.Node == "" {
			continue
		}
		m.addLocal(w.Node, uid)
	}
	m.scopePolicies(policies, workloads)
	m.Waypoints = wps.list()
	m.Warnings = append(m.Warnings, wps.warnings...)
	return m
}

func (m *Mesh) addLocal(node, name string) {
	if m.local[node] == nil {
		m.local[node] = map[string]Resource{}
	}
	m.local[node][name] = m.Resources[name]
}

// authorizations translates the AuthorizationPolicies into resources and status conditions,
// and names in each enrolled workload the WORKLOAD_SELECTOR policies that select it (a
// policy of the root namespace selects workloads of every namespace, as in Istio). It returns
// the translated policies by resource name.
func (m *Mesh) authorizations(in Input, workloads map[string]*workloadv1.Workload, services map[string]string, wps map[string]*Waypoint, o Options) map[string]*policy {
	out := map[string]*policy{}
	selectorsByNS := map[string][]*policy{}
	for _, ap := range in.AuthorizationPolicies {
		p := authorization(ap, services, wps, o)
		m.PolicyStatus[PolicyKey(ap.Namespace, ap.Name)] = p.cond
		if p.warning != nil {
			m.Warnings = append(m.Warnings, p.warning)
		}
		if p.auth == nil {
			continue
		}
		r, err := newResource(&workloadv1.Address{Name: p.name, Type: &workloadv1.Address_Authorization{Authorization: p.auth}})
		if err != nil {
			m.Warnings = append(m.Warnings, err)
			continue
		}
		m.Resources[p.name] = r
		out[p.name] = p
		if p.auth.Scope == workloadv1.AuthorizationScope_WORKLOAD_SELECTOR {
			selectorsByNS[ap.Namespace] = append(selectorsByNS[ap.Namespace], p)
		}
	}
	for _, w := range workloads {
		if w.TunnelProtocol != workloadv1.TunnelProtocol_HBONE || w.NativeTunnel {
			continue
		}
		candidates := selectorsByNS[w.Namespace]
		if w.Namespace != o.RootNamespace {
			candidates = append(slices.Clip(candidates), selectorsByNS[o.RootNamespace]...)
		}
		for _, p := range candidates {
			if selects(p.selector, w.Labels) {
				w.AuthorizationPolicies = append(w.AuthorizationPolicies, p.name)
			}
		}
		slices.Sort(w.AuthorizationPolicies)
	}
	return out
}

// scopePolicies decides which nodes receive each policy. Policies are enforced by the
// destination's agent, so a node receives the GLOBAL policies, the NAMESPACE policies of the
// namespaces with an enrolled workload on the node, and the WORKLOAD_SELECTOR policies that
// select an enrolled workload on the node.
func (m *Mesh) scopePolicies(policies map[string]*policy, workloads map[string]*workloadv1.Workload) {
	namespaces := map[string][]*policy{}
	for name, p := range policies {
		switch p.auth.Scope {
		case workloadv1.AuthorizationScope_GLOBAL:
			m.shared[name] = m.Resources[name]
		case workloadv1.AuthorizationScope_NAMESPACE:
			namespaces[p.auth.Namespace] = append(namespaces[p.auth.Namespace], p)
		}
	}
	for _, w := range workloads {
		if w.TunnelProtocol != workloadv1.TunnelProtocol_HBONE || w.NativeTunnel || w.Node == "" {
			continue
		}
		for _, p := range namespaces[w.Namespace] {
			m.addLocal(w.Node, p.name)
		}
		for _, name := range w.AuthorizationPolicies {
			m.addLocal(w.Node, name)
		}
	}
}

// Shared returns the resources every node receives, and Local those that only node receives
// besides: ForNode(node) is their union, and they never overlap. The maps belong to the Mesh.
func (m *Mesh) Shared() map[string]Resource { return m.shared }

// Local returns the resources that only node receives (see Shared).
func (m *Mesh) Local(node string) map[string]Resource { return m.local[node] }

// ForNode returns the resources that the agent of node receives.
func (m *Mesh) ForNode(node string) map[string]Resource {
	out := make(map[string]Resource, len(m.shared)+len(m.local[node]))
	maps.Copy(out, m.shared)
	maps.Copy(out, m.local[node])
	return out
}

// Names returns the sorted names of rs.
func Names(rs map[string]Resource) []string {
	return slices.Sorted(maps.Keys(rs))
}

func newResource(a *workloadv1.Address) (Resource, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(a)
	if err != nil {
		return Resource{}, fmt.Errorf("%s: %w; it is left out of the mesh", a.Name, err)
	}
	sum := sha256.Sum256(b)
	return Resource{Address: a, Version: hex.EncodeToString(sum[:8])}, nil
}

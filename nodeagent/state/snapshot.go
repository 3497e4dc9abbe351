package state

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Snapshot is the agent's knowledge of the mesh at one configuration version. It is immutable
// and safe for concurrent use; build one with [NewSnapshot].
type Snapshot struct {
	version   string
	workloads []*Workload // sorted by UID
	services  []*Service  // sorted by namespace, hostname

	byUID  map[string]*Workload
	byIP   map[netip.Addr]*Workload
	byNode map[string][]*Workload // sorted by UID
	byAddr map[netip.AddrPort]*Service
	byName map[string]*Service // by namespace/hostname
	authz  authzIndex

	err error // result of validation
}

// NewSnapshot builds the snapshot of configuration version from workloads and services, and
// the authorization policies of [WithAuthorizations]. It copies every Workload, Service and
// Authorization (the slices and maps inside them are shared: the caller must not modify them
// afterwards), resolves identities, service endpoints and the policies of each workload, and
// builds the indexes of the lookups.
//
// NewSnapshot always returns a snapshot; [Snapshot.Validate] tells whether its content is
// valid. Lookups on an invalid snapshot are well defined (of two workloads with the same UID
// or address, the first one listed wins), but a [Store] refuses it.
func NewSnapshot(version string, workloads []*Workload, services []*Service, opts ...Option) *Snapshot {
	var o snapshotOptions
	for _, opt := range opts {
		opt(&o)
	}
	s := &Snapshot{
		version: version,
		byUID:   make(map[string]*Workload, len(workloads)),
		byIP:    make(map[netip.Addr]*Workload, len(workloads)),
		byNode:  make(map[string][]*Workload),
		byAddr:  make(map[netip.AddrPort]*Service, len(services)),
		byName:  make(map[string]*Service, len(services)),
	}
	// Policies first, so that workloads can name them; their problems come last, in the
	// order of the configuration file.
	var pa Problems
	s.authz.buildAuthorizations(&pa, o.authorizations)
	s.authz.policies = make(map[*Workload][]*Authorization, len(workloads))
	var p Problems
	uidAt := make(map[string]int, len(workloads))    // uid → index of its first workload
	ipAt := make(map[netip.Addr]int, len(workloads)) // address → index of its workload
	for i, in := range workloads {
		path := "workloads[" + strconv.Itoa(i) + "]"
		if in == nil {
			p.Add(path, "empty entry; describe a workload or remove the entry")
			continue
		}
		w := new(Workload)
		*w = *in
		w.id = spiffeid.ID{}
		validateWorkload(&p, path, w)
		s.authz.resolvePolicies(&p, path, w)
		if w.UID != "" {
			if j, dup := uidAt[w.UID]; dup {
				p.Add(path+".uid", "%q is already the uid of workloads[%d]; give every workload a unique uid", w.UID, j)
				continue
			}
			uidAt[w.UID] = i
		}
		w.Addresses = slices.Clone(w.Addresses)
		for k, a := range w.Addresses {
			a = normalize(a)
			w.Addresses[k] = a
			if !a.IsValid() {
				continue // reported by validateWorkload
			}
			if j, dup := ipAt[a]; dup {
				if j == i {
					p.Add(fmt.Sprintf("%s.addresses[%d]", path, k), "%s is listed twice; list each address once", a)
				} else {
					p.Add(fmt.Sprintf("%s.addresses[%d]", path, k), "%s is already an address of workloads[%d] (uid %q); give every workload its own addresses", a, j, workloads[j].UID)
				}
				continue
			}
			ipAt[a] = i
			s.byIP[a] = w
		}
		if w.UID != "" {
			s.byUID[w.UID] = w
		}
		s.workloads = append(s.workloads, w)
	}
	slices.SortFunc(s.workloads, func(a, b *Workload) int { return strings.Compare(a.UID, b.UID) })
	for _, w := range s.workloads {
		s.byNode[w.Node] = append(s.byNode[w.Node], w)
	}

	svcAt := make(map[string]int, len(services))            // namespace/hostname → index
	addrAt := make(map[netip.AddrPort]int, len(services)*2) // VIP:port → index
	for i, in := range services {
		path := "services[" + strconv.Itoa(i) + "]"
		if in == nil {
			p.Add(path, "empty entry; describe a service or remove the entry")
			continue
		}
		svc := new(Service)
		*svc = *in
		svc.targets = nil
		validateService(&p, path, svc, s.byUID)
		if svc.Namespace != "" && svc.Hostname != "" {
			key := svc.NamespacedHostname()
			if j, dup := svcAt[key]; dup {
				p.Add(path+".hostname", "%q in namespace %q is already services[%d]; describe each service once", svc.Hostname, svc.Namespace, j)
				continue
			}
			svcAt[key] = i
			s.byName[key] = svc
		}
		svc.VIPs = slices.Clone(svc.VIPs)
		for k, vip := range svc.VIPs {
			vip = normalize(vip)
			svc.VIPs[k] = vip
			if !vip.IsValid() {
				continue
			}
			if slices.Contains(svc.VIPs[:k], vip) {
				p.Add(fmt.Sprintf("%s.vips[%d]", path, k), "%s is listed twice; list each VIP once", vip)
				continue
			}
			for _, sp := range svc.Ports {
				if sp.Port == 0 {
					continue
				}
				ap := netip.AddrPortFrom(vip, sp.Port)
				if j, dup := addrAt[ap]; dup {
					if j != i { // a port listed twice is reported by validateService
						p.Add(fmt.Sprintf("%s.vips[%d]", path, k), "%s is already served by services[%d] (%s); give each service its own VIP", ap, j, services[j].NamespacedHostname())
					}
					continue
				}
				addrAt[ap] = i
				s.byAddr[ap] = svc
			}
		}
		svc.targets = resolveTargets(svc, s.byUID)
		s.services = append(s.services, svc)
	}
	slices.SortFunc(s.services, func(a, b *Service) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Hostname, b.Hostname))
	})
	p.errs = append(p.errs, pa.errs...)
	s.err = p.Err()
	return s
}

// normalize makes addresses comparable: IPv4-mapped IPv6 addresses become IPv4, zones are
// dropped.
func normalize(a netip.Addr) netip.Addr {
	if !a.IsValid() {
		return a
	}
	return a.Unmap().WithZone("")
}

const portFix = "write a port number from 1 to 65535"

func validateWorkload(p *Problems, path string, w *Workload) {
	if w.UID == "" {
		p.Add(path+".uid", `missing; set a unique id, e.g. "Kubernetes//Pod/<namespace>/<name>"`)
	}
	if w.Name == "" {
		p.Add(path+".name", "missing; set the workload's (pod's) name")
	}
	switch {
	case w.Namespace == "":
		p.Add(path+".namespace", "missing; set the workload's namespace")
	case spiffeid.ValidatePathSegment(w.Namespace) != nil:
		p.Add(path+".namespace", "%q cannot be part of a SPIFFE ID; use letters, digits, '.', '-' and '_'", w.Namespace)
	}
	if w.ServiceAccount != "" && spiffeid.ValidatePathSegment(w.ServiceAccount) != nil {
		p.Add(path+".serviceAccount", "%q cannot be part of a SPIFFE ID; use letters, digits, '.', '-' and '_'", w.ServiceAccount)
	}
	if w.TrustDomain != "" {
		if _, err := spiffeid.TrustDomainFromString(w.TrustDomain); err != nil || strings.Contains(w.TrustDomain, "/") {
			p.Add(path+".trustDomain", "%q is not a trust domain; use lowercase letters, digits, '.', '-' and '_', e.g. %q", w.TrustDomain, DefaultTrustDomain)
		}
	}
	if id, err := w.identity(); err == nil {
		w.id = id
	}
	if len(w.Addresses) == 0 && w.Node == "" {
		// A pod scheduled to a node but not started yet has no address: its agent learns it
		// from the CNI plugin and enrolls the pod before its containers start.
		p.Add(path+".addresses", "empty; list the workload's IP addresses (only a workload with a node, a pod not started yet, may have none)")
	}
	validateAddrs(p, path+".addresses", w.Addresses, "the workload's IP address")
	if !enumValid(tunnelProtocolNames, w.TunnelProtocol) {
		p.Add(path+".tunnelProtocol", "unknown tunnel protocol %d; use %s", w.TunnelProtocol, orList(tunnelProtocolNames))
	}
	if !enumValid(workloadStatusNames, w.Status) {
		p.Add(path+".status", "unknown status %d; use %s", w.Status, orList(workloadStatusNames))
	}
	if !enumValid(workloadTypeNames, w.WorkloadType) {
		p.Add(path+".workloadType", "unknown workload type %d; use %s", w.WorkloadType, orList(workloadTypeNames))
	}
	if w.Waypoint != nil {
		validateGateway(p, path+".waypoint", w.Waypoint)
	}
	for k, port := range w.ExcludeInboundPorts {
		if port == 0 {
			p.Add(fmt.Sprintf("%s.excludeInboundPorts[%d]", path, k), "0 is not a port; %s", portFix)
		}
	}
	for k, port := range w.ExcludeOutboundPorts {
		if port == 0 {
			p.Add(fmt.Sprintf("%s.excludeOutboundPorts[%d]", path, k), "0 is not a port; %s", portFix)
		}
	}
	pa := path + ".peerAuthentication"
	if !enumValid(modeNames, w.PeerAuthentication.Mode) {
		p.Add(pa+".mtls.mode", "unknown mode %d; use %s", w.PeerAuthentication.Mode, orList(modeNames))
	}
	for _, port := range sortedKeysIf(w.PeerAuthentication.PortLevel, func(port uint16, m Mode) bool {
		return port == 0 || !enumValid(modeNames, m)
	}) {
		pp := fmt.Sprintf("%s.portLevelMtls[%d]", pa, port)
		if port == 0 {
			p.Add(pp, "0 is not a port; %s", portFix)
		}
		if m := w.PeerAuthentication.PortLevel[port]; !enumValid(modeNames, m) {
			p.Add(pp+".mode", "unknown mode %d; use %s", m, orList(modeNames))
		}
	}
}

// addrProblem describes what is wrong with a, or returns "" when a can be a workload, service
// or gateway address.
func addrProblem(a netip.Addr, what string) string {
	switch {
	case !a.IsValid():
		return "missing; write " + what
	case a.IsUnspecified() || a.IsMulticast():
		return a.String() + " cannot be a workload or service address; write " + what
	}
	return ""
}

func validateAddr(p *Problems, path string, a netip.Addr, what string) {
	if msg := addrProblem(a, what); msg != "" {
		p.Add(path, "%s", msg)
	}
}

// validateAddrs checks a list of addresses, formatting the path of an element only when it
// is wrong.
func validateAddrs(p *Problems, path string, addrs []netip.Addr, what string) {
	for k, a := range addrs {
		if msg := addrProblem(a, what); msg != "" {
			p.Add(path+"["+strconv.Itoa(k)+"]", "%s", msg)
		}
	}
}

// validateGateway checks a waypoint reference: it names the waypoint's Service, or gives its
// address, or both.
func validateGateway(p *Problems, path string, g *GatewayAddress) {
	if (g.Namespace == "") != (g.Hostname == "") {
		p.Add(path+".hostname", "namespace and hostname name the waypoint's Service together; set both or neither")
	}
	switch {
	case g.Hostname == "":
		validateAddr(p, path+".address", g.Address, "the waypoint's IP address or name its Service (namespace and hostname)")
	case g.Address.IsValid():
		validateAddr(p, path+".address", g.Address, "the waypoint's IP address")
	}
}

func validateService(p *Problems, path string, svc *Service, byUID map[string]*Workload) {
	if svc.Name == "" {
		p.Add(path+".name", "missing; set the service's name")
	}
	if svc.Namespace == "" {
		p.Add(path+".namespace", "missing; set the service's namespace")
	}
	if svc.Hostname == "" {
		p.Add(path+".hostname", `missing; set the service's hostname, e.g. "<name>.<namespace>.svc.cluster.local"`)
	}
	validateAddrs(p, path+".vips", svc.VIPs, "the service's cluster IP")
	portAt := make(map[uint16]int, len(svc.Ports))
	for k, sp := range svc.Ports {
		pp := func() string { return path + ".ports[" + strconv.Itoa(k) + "]" }
		if sp.Port == 0 {
			p.Add(pp()+".port", "0 is not a port; %s", portFix)
		} else if j, dup := portAt[sp.Port]; dup {
			p.Add(pp()+".port", "%d is already ports[%d]; list each service port once", sp.Port, j)
		} else {
			portAt[sp.Port] = k
		}
		if !enumValid(appProtocolNames, sp.AppProtocol) {
			p.Add(pp()+".appProtocol", "unknown app protocol %d; use %s", sp.AppProtocol, orList(appProtocolNames))
		}
	}
	epAt := make(map[string]int, len(svc.Endpoints))
	for k, ep := range svc.Endpoints {
		pe := func() string { return path + ".endpoints[" + strconv.Itoa(k) + "]" }
		switch _, known := byUID[ep.WorkloadUID]; {
		case ep.WorkloadUID == "":
			p.Add(pe()+".workloadUid", "missing; set the uid of a workload")
		case !known:
			p.Add(pe()+".workloadUid", "no workload has uid %q; add that workload or remove the endpoint", ep.WorkloadUID)
		default:
			if j, dup := epAt[ep.WorkloadUID]; dup {
				p.Add(pe()+".workloadUid", "%q is already endpoints[%d]; list each workload once", ep.WorkloadUID, j)
			} else {
				epAt[ep.WorkloadUID] = k
			}
		}
		for _, sport := range sortedKeysIf(ep.Ports, func(sport, tport uint16) bool {
			_, ok := portAt[sport]
			return !ok || tport == 0
		}) {
			pp := fmt.Sprintf("%s.ports[%d]", pe(), sport)
			if _, ok := portAt[sport]; !ok {
				p.Add(pp, "%d is not a port of the service; use one of %s", sport, portList(svc.Ports))
			}
			if ep.Ports[sport] == 0 {
				p.Add(pp, "target port 0 is not a port; %s", portFix)
			}
		}
	}
	if svc.Waypoint != nil {
		validateGateway(p, path+".waypoint", svc.Waypoint)
	}
}

// sortedKeysIf returns the keys of m, sorted, when bad holds for one of its entries, and nil
// otherwise: validation looks at the entries in a stable order without sorting valid maps.
func sortedKeysIf[V any](m map[uint16]V, bad func(uint16, V) bool) []uint16 {
	for k, v := range m {
		if bad(k, v) {
			return slices.Sorted(maps.Keys(m))
		}
	}
	return nil
}

func portList(ports []ServicePort) string {
	if len(ports) == 0 {
		return "(none: the service has no ports)"
	}
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p.Port))
	}
	return strings.Join(s, ", ")
}

// resolveTargets lists, for each port of svc, its healthy endpoints with the target port
// resolved. Duplicate and unknown endpoints are left out.
func resolveTargets(svc *Service, byUID map[string]*Workload) [][]target {
	type candidate struct {
		w  *Workload
		ep *Endpoint
	}
	cands := make([]candidate, 0, len(svc.Endpoints))
	seen := make(map[*Workload]bool, len(svc.Endpoints))
	for i := range svc.Endpoints {
		ep := &svc.Endpoints[i]
		w := byUID[ep.WorkloadUID]
		if w == nil || seen[w] || !w.Healthy() || len(w.Addresses) == 0 {
			continue
		}
		seen[w] = true
		cands = append(cands, candidate{w, ep})
	}
	targets := make([][]target, len(svc.Ports))
	for k, sp := range svc.Ports {
		if len(cands) > 0 {
			targets[k] = make([]target, 0, len(cands))
		}
		for _, c := range cands {
			w, ep := c.w, c.ep
			port := sp.TargetPort
			if port == 0 {
				port = sp.Port
			}
			if o := ep.Ports[sp.Port]; o != 0 {
				port = o
			}
			targets[k] = append(targets[k], target{w: w, port: port})
		}
	}
	return targets
}

// Validate returns nil when the snapshot's content is valid, or a *[ValidationError] listing
// every problem: missing or malformed fields, duplicate UIDs, addresses and services, VIP and
// port clashes, endpoints naming unknown workloads, ports out of range, unknown modes, and
// authorizations that are malformed, duplicated or named by a workload without existing.
func (s *Snapshot) Validate() error { return s.err }

// Version returns the configuration version the snapshot was built from.
func (s *Snapshot) Version() string { return s.version }

// Workloads returns every workload, sorted by UID. The slice belongs to the snapshot.
func (s *Snapshot) Workloads() []*Workload { return s.workloads }

// Services returns every service, sorted by namespace and hostname. The slice belongs to the
// snapshot.
func (s *Snapshot) Services() []*Service { return s.services }

// WorkloadByIP returns the workload that has address ip. IPv4-mapped IPv6 addresses match
// their IPv4 form.
func (s *Snapshot) WorkloadByIP(ip netip.Addr) (*Workload, bool) {
	w, ok := s.byIP[normalize(ip)]
	return w, ok
}

// WorkloadByUID returns the workload with the given UID.
func (s *Snapshot) WorkloadByUID(uid string) (*Workload, bool) {
	w, ok := s.byUID[uid]
	return w, ok
}

// ServiceByAddr returns the service that has addr's IP as a VIP and addr's port as a service
// port.
func (s *Snapshot) ServiceByAddr(addr netip.AddrPort) (*Service, bool) {
	svc, ok := s.byAddr[netip.AddrPortFrom(normalize(addr.Addr()), addr.Port())]
	return svc, ok
}

// ServiceByName returns the service "<namespace>/<hostname>".
func (s *Snapshot) ServiceByName(namespacedHostname string) (*Service, bool) {
	svc, ok := s.byName[namespacedHostname]
	return svc, ok
}

// Waypoint returns a healthy pod of waypoint g to send HBONE to, or false when the waypoint
// has none (it is missing, not deployed yet, or its pods are not ready). The waypoint's
// Service is found by name, else by address.
func (s *Snapshot) Waypoint(g *GatewayAddress, pick func(n int) int) (*Workload, bool) {
	port := g.HBONEMTLSPort
	if port == 0 {
		port = DefaultHBONEPort
	}
	svc, ok := s.byName[g.Namespace+"/"+g.Hostname]
	if !ok && g.Address.IsValid() {
		svc, ok = s.ServiceByAddr(netip.AddrPortFrom(g.Address, port))
	}
	if !ok {
		return nil, false
	}
	w, _, ok := s.PickEndpoint(svc, port, pick)
	return w, ok
}

// LocalWorkloads returns the workloads of node, sorted by UID. The slice belongs to the
// snapshot.
func (s *Snapshot) LocalWorkloads(node string) []*Workload { return s.byNode[node] }

// PickEndpoint chooses an endpoint of svc for service port port among its healthy workloads
// and returns the workload and the port to connect to on it (the target port, with the
// endpoint's override applied). pick receives the number n of candidates, always at least 1,
// and returns the index of the one to use, in [0, n) (for example rand.IntN); a nil pick takes
// the first. PickEndpoint returns false when svc has no such port, no healthy endpoint, or
// pick answers out of range.
func (s *Snapshot) PickEndpoint(svc *Service, port uint16, pick func(n int) int) (*Workload, uint16, bool) {
	for k, sp := range svc.Ports {
		if sp.Port != port || k >= len(svc.targets) {
			continue
		}
		ts := svc.targets[k]
		if len(ts) == 0 {
			return nil, 0, false
		}
		i := 0
		if pick != nil {
			i = pick(len(ts))
		}
		if i < 0 || i >= len(ts) {
			return nil, 0, false
		}
		return ts[i].w, ts[i].port, true
	}
	return nil, 0, false
}

// InboundMode returns the PeerAuthentication mode that applies to inbound connections to port
// (the workload's own port, not a service port) of w: the port-level mode when one is set,
// else the workload's mode, else PERMISSIVE, as Istio defaults. A workload that is not
// enrolled in the mesh gets DISABLE: the agent does not capture its traffic, so it enforces
// nothing for it.
func (s *Snapshot) InboundMode(w *Workload, port uint16) Mode {
	if w == nil || w.TunnelProtocol != TunnelHBONE {
		return ModeDisable
	}
	if m := w.PeerAuthentication.PortLevel[port]; m != ModeUnset {
		return m
	}
	if m := w.PeerAuthentication.Mode; m != ModeUnset {
		return m
	}
	return ModePermissive
}

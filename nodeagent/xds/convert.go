package xds

import (
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/api"
	workloadv1 "github.com/weftmesh/weft/api/workload/v1"
	"github.com/weftmesh/weft/nodeagent/state"
)

// Resource is one converted resource of workload discovery: exactly one field is set.
type Resource struct {
	Workload      *state.Workload
	Service       *state.Service
	Authorization *state.Authorization
}

// ConvertResource turns one resource of workload discovery into the workload, the service or
// the authorization policy it describes (exactly one field of the result is set when the error
// is nil). The resource's name must be the workload's uid, "<namespace>/<hostname>" for a
// service, or "authorization/<namespace>/<name>" for a policy.
//
// ConvertResource checks what the state types cannot represent: malformed addresses, ports above
// 65535 (or zero where a port is required), enumeration values the protobuf does not define,
// a name that does not match the content, an Address that sets none of the three. The error is then an [Errors] list naming the resource and every field at fault.
// The rest (missing fields, identities, duplicates across resources) is for
// [state.NewSnapshot] and [state.Snapshot.Validate].
//
// The workload shares the labels map of a: do not modify a afterwards.
func ConvertResource(a *workloadv1.Address) (Resource, error) {
	return convertResource(a.GetName(), a)
}

// decodeResource decodes and converts a resource of a delta response, received as name.
func decodeResource(name string, r *discoveryv3.Resource) (resource, error) {
	p := &problems{kind: KindResource, name: name}
	body := r.GetResource()
	switch {
	case name == "":
		p.add("", "the xDS resource has no name; name it after the workload's uid, the service's \"<namespace>/<hostname>\" or \"authorization/<namespace>/<name>\"")
	case body == nil:
		p.add("", "the xDS resource has no body; send the Address (the agent does not use TTL heartbeats)")
	case body.GetTypeUrl() != api.AddressType:
		p.add("", "the body is a %s; send a %s", body.GetTypeUrl(), api.AddressType)
	}
	if err := p.err(); err != nil {
		return resource{}, err
	}
	var a workloadv1.Address
	if err := proto.Unmarshal(body.GetValue(), &a); err != nil {
		p.add("", "the body is not a valid Address: %v", err)
		return resource{}, p.err()
	}
	res, err := convertResource(name, &a)
	if err != nil {
		return resource{}, err
	}
	return resource{version: r.GetVersion(), Resource: res}, nil
}

// convertResource converts a, received as the resource called name.
func convertResource(name string, a *workloadv1.Address) (Resource, error) {
	switch {
	case a.GetWorkload() != nil:
		p := &problems{kind: KindWorkload, name: name}
		checkName(p, name, a.GetName())
		w := convertWorkload(p, name, a.GetWorkload())
		if err := p.err(); err != nil {
			return Resource{}, err
		}
		return Resource{Workload: w}, nil
	case a.GetService() != nil:
		p := &problems{kind: KindService, name: name}
		checkName(p, name, a.GetName())
		svc := convertService(p, name, a.GetService())
		if err := p.err(); err != nil {
			return Resource{}, err
		}
		return Resource{Service: svc}, nil
	case a.GetAuthorization() != nil:
		p := &problems{kind: KindAuthorization, name: name}
		checkName(p, name, a.GetName())
		az := convertAuthorization(p, name, a.GetAuthorization())
		if err := p.err(); err != nil {
			return Resource{}, err
		}
		return Resource{Authorization: az}, nil
	default:
		p := &problems{kind: KindResource, name: name}
		p.add("", "neither workload, service nor authorization is set; an Address describes one of them")
		return Resource{}, p.err()
	}
}

// checkName checks the Address's own name against the name it was received under.
func checkName(p *problems, resource, own string) {
	if own != resource {
		p.add("name", "%q differs from the name of the xDS resource; name the resource and the Address alike", own)
	}
}

func convertWorkload(p *problems, name string, in *workloadv1.Workload) *state.Workload {
	if in.GetUid() != "" && in.GetUid() != name {
		p.add("uid", "%q differs from the resource name; name a workload resource after its uid", in.GetUid())
	}
	w := &state.Workload{
		UID:               in.GetUid(),
		Name:              in.GetName(),
		Namespace:         in.GetNamespace(),
		ServiceAccount:    in.GetServiceAccount(),
		TrustDomain:       in.GetTrustDomain(),
		Node:              in.GetNode(),
		ClusterID:         in.GetClusterId(),
		WorkloadName:      in.GetWorkloadName(),
		CanonicalName:     in.GetCanonicalName(),
		CanonicalRevision: in.GetCanonicalRevision(),
		Labels:            in.GetLabels(),
	}
	w.Addresses = parseAddrs(p, "addresses", in.GetAddresses())
	w.TunnelProtocol = convertEnum[state.TunnelProtocol](p, "tunnelProtocol", in.GetTunnelProtocol(), workloadv1.TunnelProtocol_name)
	w.NativeTunnel = in.GetNativeTunnel()
	w.Status = convertEnum[state.WorkloadStatus](p, "status", in.GetStatus(), workloadv1.WorkloadStatus_name)
	w.WorkloadType = convertEnum[state.WorkloadType](p, "workloadType", in.GetWorkloadType(), workloadv1.WorkloadType_name)
	w.Waypoint = convertGateway(p, "waypoint", in.GetWaypoint())
	w.ExcludeInboundPorts = convertPorts(p, "excludeInboundPorts", in.GetExcludeInboundPorts())
	w.ExcludeOutboundPorts = convertPorts(p, "excludeOutboundPorts", in.GetExcludeOutboundPorts())
	if pa := in.GetPeerAuthentication(); pa != nil {
		w.PeerAuthentication.Mode = convertEnum[state.Mode](p, "peerAuthentication.mode", pa.GetMode(), workloadv1.MTLSMode_name)
		if len(pa.GetPortLevel()) > 0 {
			w.PeerAuthentication.PortLevel = make(map[uint16]state.Mode, len(pa.GetPortLevel()))
			for _, port := range slices.Sorted(maps.Keys(pa.GetPortLevel())) {
				field := "peerAuthentication.portLevel[" + strconv.FormatUint(uint64(port), 10) + "]"
				mode := convertEnum[state.Mode](p, field, pa.GetPortLevel()[port], workloadv1.MTLSMode_name)
				if n, ok := convertPort(p, field, port, false); ok {
					w.PeerAuthentication.PortLevel[n] = mode
				}
			}
		}
	}
	for k, rn := range in.GetAuthorizationPolicies() {
		key, ok := strings.CutPrefix(rn, state.AuthorizationResourcePrefix)
		if !ok {
			p.add("authorizationPolicies["+strconv.Itoa(k)+"]", "%q is not an authorization's resource name; write \"authorization/<namespace>/<name>\"", rn)
			continue
		}
		w.AuthorizationPolicies = append(w.AuthorizationPolicies, key)
	}
	return w
}

func convertService(p *problems, name string, in *workloadv1.Service) *state.Service {
	if ns, host := in.GetNamespace(), in.GetHostname(); ns != "" && host != "" && ns+"/"+host != name {
		p.add("", "the resource name differs from %q; name a service resource \"<namespace>/<hostname>\"", ns+"/"+host)
	}
	svc := &state.Service{
		Name:      in.GetName(),
		Namespace: in.GetNamespace(),
		Hostname:  in.GetHostname(),
	}
	svc.VIPs = parseAddrs(p, "vips", in.GetVips())
	svc.Waypoint = convertGateway(p, "waypoint", in.GetWaypoint())
	for k, port := range in.GetPorts() {
		field := "ports[" + strconv.Itoa(k) + "]"
		if port == nil {
			continue // a nil element cannot come off the wire
		}
		sp := state.ServicePort{Name: port.GetName()}
		sp.Port, _ = convertPort(p, field+".port", port.GetPort(), false)
		sp.TargetPort, _ = convertPort(p, field+".targetPort", port.GetTargetPort(), true)
		sp.AppProtocol = convertEnum[state.AppProtocol](p, field+".appProtocol", port.GetAppProtocol(), workloadv1.AppProtocol_name)
		svc.Ports = append(svc.Ports, sp)
	}
	for k, ep := range in.GetEndpoints() {
		if ep == nil {
			continue
		}
		field := "endpoints[" + strconv.Itoa(k) + "]"
		e := state.Endpoint{WorkloadUID: ep.GetWorkloadUid()}
		if len(ep.GetPorts()) > 0 {
			e.Ports = make(map[uint16]uint16, len(ep.GetPorts()))
			for _, sport := range slices.Sorted(maps.Keys(ep.GetPorts())) {
				pf := field + ".ports[" + strconv.FormatUint(uint64(sport), 10) + "]"
				s, okS := convertPort(p, pf, sport, false)
				t, okT := convertPort(p, pf, ep.GetPorts()[sport], false)
				if okS && okT {
					e.Ports[s] = t
				}
			}
		}
		svc.Endpoints = append(svc.Endpoints, e)
	}
	return svc
}

func convertGateway(p *problems, field string, in *workloadv1.GatewayAddress) *state.GatewayAddress {
	if in == nil {
		return nil
	}
	g := &state.GatewayAddress{Namespace: in.GetNamespace(), Hostname: in.GetHostname(), FallbackDirect: in.GetFallbackDirect()}
	switch {
	case in.GetAddress() != "":
		g.Address = parseAddr(p, field+".address", in.GetAddress())
	case in.GetHostname() == "":
		p.add(field+".address", "missing; write the waypoint's IP address or name its Service (namespace and hostname)")
	}
	g.HBONEMTLSPort, _ = convertPort(p, field+".hboneMtlsPort", in.GetHboneMtlsPort(), true)
	return g
}

func parseAddrs(p *problems, field string, in []string) []netip.Addr {
	if in == nil {
		return nil
	}
	out := make([]netip.Addr, 0, len(in))
	for k, s := range in {
		if a := parseAddr(p, field+"["+strconv.Itoa(k)+"]", s); a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

func parseAddr(p *problems, field, s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		p.add(field, "%q is not an IP address; write an IPv4 or IPv6 address", s)
		return netip.Addr{}
	case a.Zone() != "":
		p.add(field, "%q has a zone; write the address without %q", s, "%"+a.Zone())
		return netip.Addr{}
	}
	return a.Unmap()
}

func convertPorts(p *problems, field string, in []uint32) []uint16 {
	if in == nil {
		return nil
	}
	out := make([]uint16, 0, len(in))
	for k, n := range in {
		if port, ok := convertPort(p, field+"["+strconv.Itoa(k)+"]", n, false); ok {
			out = append(out, port)
		}
	}
	return out
}

// convertPort checks that n is a port number; zero is accepted (meaning "default") when
// zeroOK.
func convertPort(p *problems, field string, n uint32, zeroOK bool) (uint16, bool) {
	if n == 0 && zeroOK {
		return 0, true
	}
	if n < 1 || n > 65535 {
		p.add(field, "%d is out of range; write a port number from 1 to 65535", n)
		return 0, false
	}
	return uint16(n), true
}

// convertEnum converts a protobuf enumeration value to the state type of the same numbering
// (the state package keeps the protobuf's numbers); names are the protobuf's value names.
func convertEnum[S ~uint8, P ~int32](p *problems, field string, v P, names map[int32]string) S {
	if _, ok := names[int32(v)]; !ok || v < 0 || v > 255 {
		p.add(field, "unknown value %d; use %s", int32(v), enumList(names))
		return 0
	}
	return S(v)
}

// enumList formats the value names of an enumeration in numeric order, as "A, B or C".
func enumList(names map[int32]string) string {
	nums := slices.Sorted(maps.Keys(names))
	s := make([]string, len(nums))
	for i, n := range nums {
		s[i] = names[n]
	}
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

//lint:file-ignore SA1019 Envoy still accepts the deprecated matchers, so the waypoint implements them as Envoy does.

package rbac

import (
	"fmt"
	"net/netip"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

// matcher is one compiled permission or principal.
type matcher interface {
	match(r *Request) bool
}

type constMatcher bool

func (c constMatcher) match(*Request) bool { return bool(c) }

type andMatcher []matcher

func (a andMatcher) match(r *Request) bool {
	for _, m := range a {
		if !m.match(r) {
			return false
		}
	}
	return true
}

type orMatcher []matcher

func (o orMatcher) match(r *Request) bool { return anyMatch(o, r) }

type notMatcher struct{ m matcher }

func (n notMatcher) match(r *Request) bool { return !n.m.match(r) }

// ipMatcher matches a CIDR range against the source or the destination address.
type ipMatcher struct {
	prefix      netip.Prefix
	destination bool
}

func (m ipMatcher) match(r *Request) bool {
	a := r.SourceIP
	if m.destination {
		a = r.DestinationIP
	}
	// Envoy reports an IPv4 peer of a dual-stack socket as IPv4 too.
	return a.IsValid() && m.prefix.Contains(a.Unmap())
}

type portMatcher uint32

func (p portMatcher) match(r *Request) bool { return uint32(r.DestinationPort) == uint32(p) }

// portRangeMatcher is [start, end).
type portRangeMatcher struct{ start, end int32 }

func (p portRangeMatcher) match(r *Request) bool {
	port := int32(r.DestinationPort)
	return p.start <= port && port < p.end
}

// pathMatcher matches :path without its query and fragment.
type pathMatcher struct{ s stringMatcher }

func (p *pathMatcher) match(r *Request) bool {
	if r.Path == "" {
		return false // Envoy: no :path header
	}
	path := r.Path
	for i := 0; i < len(path); i++ {
		if path[i] == '?' || path[i] == '#' {
			path = path[:i]
			break
		}
	}
	return p.s.Match(path)
}

// authenticatedMatcher matches the peer's URI SAN; nil s: any authenticated peer.
type authenticatedMatcher struct{ s *stringMatcher }

func (a authenticatedMatcher) match(r *Request) bool {
	if r.Principal == "" {
		return false // not authenticated
	}
	return a.s == nil || a.s.Match(r.Principal)
}

func compilePermission(path string, p *rbacv3.Permission) (matcher, error) {
	switch x := p.GetRule().(type) {
	case *rbacv3.Permission_Any:
		return constMatcher(true), nil
	case *rbacv3.Permission_AndRules:
		ms, err := compileList(path+".and_rules.rules", x.AndRules.GetRules(), compilePermission)
		return andMatcher(ms), err
	case *rbacv3.Permission_OrRules:
		ms, err := compileList(path+".or_rules.rules", x.OrRules.GetRules(), compilePermission)
		return orMatcher(ms), err
	case *rbacv3.Permission_NotRule:
		m, err := compilePermission(path+".not_rule", x.NotRule)
		return notMatcher{m}, err
	case *rbacv3.Permission_Header:
		return compileHeader(path+".header", x.Header)
	case *rbacv3.Permission_UrlPath:
		return compilePath(path+".url_path", x.UrlPath)
	case *rbacv3.Permission_DestinationIp:
		pfx, err := compileCIDR(path+".destination_ip", x.DestinationIp)
		return ipMatcher{prefix: pfx, destination: true}, err
	case *rbacv3.Permission_DestinationPort:
		if x.DestinationPort > 65535 {
			return nil, fmt.Errorf("rbac: %s.destination_port: %d is not a port; use 0-65535", path, x.DestinationPort)
		}
		return portMatcher(x.DestinationPort), nil
	case *rbacv3.Permission_DestinationPortRange:
		return compilePortRange(path+".destination_port_range", x.DestinationPortRange)
	case *rbacv3.Permission_RequestedServerName:
		s, err := compileString(path+".requested_server_name", x.RequestedServerName)
		if err != nil {
			return nil, err
		}
		// The waypoint sees a request, not a TLS handshake: there is no SNI, as in Envoy for
		// a connection without one.
		return constMatcher(s.Match("")), nil
	case *rbacv3.Permission_Metadata:
		return nil, fmt.Errorf("rbac: %s.metadata: dynamic metadata is not available in the waypoint; match headers, paths or addresses instead", path)
	case *rbacv3.Permission_SourcedMetadata:
		return nil, fmt.Errorf("rbac: %s.sourced_metadata: metadata is not available in the waypoint; match headers, paths or addresses instead", path)
	case *rbacv3.Permission_Matcher:
		return nil, fmt.Errorf("rbac: %s.matcher: custom matcher extensions are not supported by the waypoint; use the built-in permissions", path)
	case *rbacv3.Permission_UriTemplate:
		return nil, fmt.Errorf("rbac: %s.uri_template: URI templates are not supported by the waypoint; use url_path with a prefix, suffix or safe_regex", path)
	case nil:
		return nil, fmt.Errorf("rbac: %s: no rule set; set one, e.g. any: true", path)
	default:
		return nil, fmt.Errorf("rbac: %s: unsupported permission %T", path, x)
	}
}

func compilePrincipal(path string, p *rbacv3.Principal) (matcher, error) {
	switch x := p.GetIdentifier().(type) {
	case *rbacv3.Principal_Any:
		return constMatcher(true), nil
	case *rbacv3.Principal_AndIds:
		ms, err := compileList(path+".and_ids.ids", x.AndIds.GetIds(), compilePrincipal)
		return andMatcher(ms), err
	case *rbacv3.Principal_OrIds:
		ms, err := compileList(path+".or_ids.ids", x.OrIds.GetIds(), compilePrincipal)
		return orMatcher(ms), err
	case *rbacv3.Principal_NotId:
		m, err := compilePrincipal(path+".not_id", x.NotId)
		return notMatcher{m}, err
	case *rbacv3.Principal_Authenticated_:
		if x.Authenticated.GetPrincipalName() == nil {
			return authenticatedMatcher{}, nil
		}
		s, err := compileString(path+".authenticated.principal_name", x.Authenticated.GetPrincipalName())
		if err != nil {
			return nil, err
		}
		return authenticatedMatcher{s: &s}, nil
	case *rbacv3.Principal_SourceIp:
		pfx, err := compileCIDR(path+".source_ip", x.SourceIp)
		return ipMatcher{prefix: pfx}, err
	case *rbacv3.Principal_DirectRemoteIp:
		pfx, err := compileCIDR(path+".direct_remote_ip", x.DirectRemoteIp)
		return ipMatcher{prefix: pfx}, err
	case *rbacv3.Principal_RemoteIp:
		pfx, err := compileCIDR(path+".remote_ip", x.RemoteIp)
		return ipMatcher{prefix: pfx}, err
	case *rbacv3.Principal_Header:
		return compileHeader(path+".header", x.Header)
	case *rbacv3.Principal_UrlPath:
		return compilePath(path+".url_path", x.UrlPath)
	case *rbacv3.Principal_Metadata:
		return nil, fmt.Errorf("rbac: %s.metadata: dynamic metadata is not available in the waypoint; match the authenticated principal or addresses instead", path)
	case *rbacv3.Principal_SourcedMetadata:
		return nil, fmt.Errorf("rbac: %s.sourced_metadata: metadata is not available in the waypoint; match the authenticated principal or addresses instead", path)
	case *rbacv3.Principal_FilterState:
		return nil, fmt.Errorf("rbac: %s.filter_state: filter state is not available in the waypoint; match the authenticated principal or addresses instead", path)
	case *rbacv3.Principal_Custom:
		return nil, fmt.Errorf("rbac: %s.custom: custom principal extensions are not supported by the waypoint; use authenticated", path)
	case nil:
		return nil, fmt.Errorf("rbac: %s: no identifier set; set one, e.g. any: true", path)
	default:
		return nil, fmt.Errorf("rbac: %s: unsupported principal %T", path, x)
	}
}

func compileList[T any](path string, items []T, conv func(string, T) (matcher, error)) ([]matcher, error) {
	if len(items) == 0 {
		return nil, fmt.Errorf("rbac: %s: empty; list at least one", path)
	}
	out := make([]matcher, 0, len(items))
	for i, it := range items {
		m, err := conv(fmt.Sprintf("%s[%d]", path, i), it)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func compilePath(path string, p *matcherv3.PathMatcher) (matcher, error) {
	x, ok := p.GetRule().(*matcherv3.PathMatcher_Path)
	if !ok || x.Path == nil {
		return nil, fmt.Errorf("rbac: %s.path: must be set, e.g. prefix: /api/", path)
	}
	s, err := compileString(path+".path", x.Path)
	if err != nil {
		return nil, err
	}
	return &pathMatcher{s: s}, nil
}

// compileCIDR parses a range as Envoy does: the address is masked to the prefix length, and a
// length beyond the address's size means the whole address.
func compileCIDR(path string, c *corev3.CidrRange) (netip.Prefix, error) {
	a, err := netip.ParseAddr(c.GetAddressPrefix())
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("rbac: %s.address_prefix: %q is not an IP address; write e.g. 10.0.0.0 with prefix_len 8", path, c.GetAddressPrefix())
	}
	bits := int(c.GetPrefixLen().GetValue())
	if bits > a.BitLen() {
		bits = a.BitLen()
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

func compilePortRange(path string, r *typev3.Int32Range) (matcher, error) {
	start, end := r.GetStart(), r.GetEnd()
	switch {
	case start < 0 || start > 65536:
		return nil, fmt.Errorf("rbac: %s.start: %d is out of bounds; use 0-65536", path, start)
	case end < 0 || end > 65536:
		return nil, fmt.Errorf("rbac: %s.end: %d is out of bounds; use 0-65536", path, end)
	case start >= end:
		return nil, fmt.Errorf("rbac: %s: start %d must be less than end %d (the range is [start, end))", path, start, end)
	}
	return portRangeMatcher{start: start, end: end}, nil
}

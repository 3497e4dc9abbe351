package envoy

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Names of the HTTP filters, also the keys of their per-route configuration.
const (
	FaultFilter  = "envoy.filters.http.fault"
	CorsFilter   = "envoy.filters.http.cors"
	RouterFilter = "envoy.filters.http.router"
)

// istioRetryOn is Istio's default retry policy (2 attempts) for routes without retries.
const istioRetryOn = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"

// routes builds a RouteConfiguration per HTTP port of the namespace's services and the
// listener with a filter chain per HTTP port, then the TCP chains (tcp.go). known holds the names of the clusters built.
func (b *builder) routes(known map[string]bool) ([]*routev3.RouteConfiguration, *listenerv3.Listener) {
	byPort := map[uint32][]*service{}
	for _, m := range []map[string]*service{b.services, b.external} {
		for _, host := range sortedKeys(m) {
			s := m[host]
			for _, p := range s.ports {
				byPort[p.number] = append(byPort[p.number], s)
			}
		}
	}
	ports := make([]uint32, 0, len(byPort))
	for p := range byPort {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	l := &listenerv3.Listener{
		Name:              ListenerName,
		Address:           &corev3.Address{Address: &corev3.Address_EnvoyInternalAddress{EnvoyInternalAddress: &corev3.EnvoyInternalAddress{AddressNameSpecifier: &corev3.EnvoyInternalAddress_ServerListenerName{ServerListenerName: ListenerName}}}},
		ListenerSpecifier: &listenerv3.Listener_InternalListener{InternalListener: &listenerv3.Listener_InternalListenerConfig{}},
	}
	var out []*routev3.RouteConfiguration
	for _, port := range ports {
		rc := &routev3.RouteConfiguration{Name: RouteName(port), ValidateClusters: wrapperspb.Bool(false)}
		var fault, cors bool
		for _, s := range byPort[port] {
			vh := &routev3.VirtualHost{Name: s.host + ":" + strconv.FormatUint(uint64(port), 10), Domains: s.domains(port)}
			vs := b.vss[s.host]
			if refs := b.attached(s.host, port); len(refs) > 0 {
				if vs != nil {
					b.problem("VirtualService", vs.ObjectMeta, "spec.hosts", fmt.Sprintf("HTTPRoute %s also routes %s on port %d and takes precedence (Istio does not support mixing both); this VirtualService is ignored for that port", refs[0].hr.Name, s.host, port), "express the rules in the HTTPRoute, or delete the HTTPRoute")
				}
				vh.Routes = b.hrRoutes(refs, port, known)
			} else if vs != nil {
				vh.Routes = b.vsRoutes(vs, s, port, known)
			} else {
				vh.Routes = []*routev3.Route{b.defaultRoute(s, port)}
			}
			for _, r := range vh.Routes {
				_, f := r.TypedPerFilterConfig[FaultFilter]
				_, c := r.TypedPerFilterConfig[CorsFilter]
				fault, cors = fault || f, cors || c
			}
			rc.VirtualHosts = append(rc.VirtualHosts, vh)
		}
		if err := rc.ValidateAll(); err != nil {
			b.problems = append(b.problems, Problem{Kind: "RouteConfiguration", Name: rc.Name, Field: "-", Message: "invalid and left out: " + err.Error(), Fix: "report this as a bug of Weft"})
			continue
		}
		chain, err := filterChain(port, fault, cors)
		if err != nil {
			b.problems = append(b.problems, Problem{Kind: "Listener", Name: ListenerName, Field: "filterChains", Message: "the chain of port " + rc.Name + " is invalid and left out: " + err.Error(), Fix: "report this as a bug of Weft"})
			continue
		}
		out = append(out, rc)
		l.FilterChains = append(l.FilterChains, chain)
	}
	l.FilterChains = append(l.FilterChains, b.tcpChains(known)...)
	podChains, podRoutes, podClusters := b.workloads(chainPorts(l.FilterChains))
	l.FilterChains = append(l.FilterChains, podChains...)
	out = append(out, podRoutes...)
	b.podClusters = podClusters
	if len(l.FilterChains) == 0 {
		return out, nil // no service port: nothing to listen for
	}
	if err := l.ValidateAll(); err != nil {
		b.problems = append(b.problems, Problem{Kind: "Listener", Name: ListenerName, Field: "-", Message: "invalid: " + err.Error(), Fix: "report this as a bug of Weft"})
		return out, nil
	}
	return out, l
}

// filterChain is the chain of one service port: the HTTP connection manager with its routes
// from RDS over ADS, the CORS and fault filters when a route of the port uses them, then the
// router.
func filterChain(port uint32, fault, cors bool) (*listenerv3.FilterChain, error) {
	var filters []*hcmv3.HttpFilter
	add := func(name string, m proto.Message) error {
		if v, ok := m.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				return err
			}
		}
		a, err := anypb.New(m)
		if err != nil {
			return err
		}
		filters = append(filters, &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}})
		return nil
	}
	if cors {
		if err := add(CorsFilter, &corsv3.Cors{}); err != nil {
			return nil, err
		}
	}
	if fault {
		if err := add(FaultFilter, &faultv3.HTTPFault{}); err != nil {
			return nil, err
		}
	}
	if err := add(RouterFilter, &routerv3.Router{}); err != nil {
		return nil, err
	}
	name := RouteName(port)
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:     "inbound_" + name,
		CodecType:      hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: name}},
		HttpFilters:    filters,
	}
	if err := hcm.ValidateAll(); err != nil {
		return nil, err
	}
	a, err := anypb.New(hcm)
	if err != nil {
		return nil, err
	}
	return &listenerv3.FilterChain{
		Name:             name,
		FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port)},
		Filters:          []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}}},
	}, nil
}

func (b *builder) defaultRoute(s *service, port uint32) *routev3.Route {
	name := ClusterName(port, "", s.host)
	a := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name},
		Timeout:          durationpb.New(0),
		RetryPolicy:      defaultRetry(),
	}
	a.HashPolicy = hashPolicies(b.effectivePolicy(s.host, port, ""))
	return &routev3.Route{
		Name:   "default",
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: a},
	}
}

func defaultRetry() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{RetryOn: istioRetryOn, NumRetries: wrapperspb.UInt32(2), RetriableStatusCodes: []uint32{503}}
}

// routeProblems collects the problems of one http route: drop says the route cannot be
// translated safely and is left out.
type routeProblems struct {
	b     *builder
	kind  string // VirtualService or HTTPRoute
	meta  metav1.ObjectMeta
	field string
	drop  bool
	// destHeaders are the header operations of a route's only destination.
	destHeaders *networking.Headers
}

func (r *routeProblems) ignore(f, msg, fix string) {
	r.b.problem(r.kind, r.meta, r.field+"."+f, msg+"; ignored", fix)
}

func (r *routeProblems) fail(f, msg, fix string) {
	r.b.problem(r.kind, r.meta, r.field+"."+f, msg+"; the route is dropped", fix)
	r.drop = true
}

// vsRoutes translates the http routes of vs for service s on port, in order: an Envoy route
// per match (one matching everything when there is none).
func (b *builder) vsRoutes(vs *networkingv1.VirtualService, s *service, port uint32, known map[string]bool) []*routev3.Route {
	var out []*routev3.Route
	for i, h := range vs.Spec.Http {
		if h == nil {
			continue
		}
		rp := &routeProblems{b: b, kind: "VirtualService", meta: vs.ObjectMeta, field: fmt.Sprintf("spec.http[%d]", i)}
		action := b.action(rp, h, s, port, known)
		if rp.drop {
			continue
		}
		matches := h.Match
		if len(matches) == 0 {
			matches = []*networking.HTTPMatchRequest{nil}
		}
		for j, m := range matches {
			if m != nil && m.Port != 0 && m.Port != port {
				continue
			}
			mp := &routeProblems{b: b, kind: "VirtualService", meta: vs.ObjectMeta, field: fmt.Sprintf("spec.http[%d].match[%d]", i, j)}
			match := routeMatch(mp, m)
			if mp.drop {
				continue
			}
			name := h.Name
			if name == "" {
				name = fmt.Sprintf("%s.%s.%d", vs.Namespace, vs.Name, i)
			}
			if m != nil && m.Name != "" {
				name += "." + m.Name
			}
			r := proto.Clone(action).(*routev3.Route)
			r.Name, r.Match = name, match
			if err := r.ValidateAll(); err != nil {
				b.problem("VirtualService", vs.ObjectMeta, rp.field, "cannot be translated ("+err.Error()+"); the route is dropped", "correct the route")
				break
			}
			out = append(out, r)
		}
	}
	return out
}

// action translates everything of an http route but its matches into a route without
// name and match.
func (b *builder) action(rp *routeProblems, h *networking.HTTPRoute, s *service, port uint32, known map[string]bool) *routev3.Route {
	r := &routev3.Route{}
	switch {
	case h.Delegate != nil:
		rp.fail("delegate", "delegation is not supported by the waypoint", "inline the delegate's routes")
		return r
	case h.Redirect != nil:
		r.Action = &routev3.Route_Redirect{Redirect: redirect(rp, h.Redirect)}
	case h.DirectResponse != nil:
		d := &routev3.DirectResponseAction{Status: h.DirectResponse.Status}
		if body := h.DirectResponse.Body; body != nil {
			switch v := body.Specifier.(type) {
			case *networking.HTTPBody_String_:
				d.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: v.String_}}
			case *networking.HTTPBody_Bytes:
				d.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: v.Bytes}}
			}
		}
		r.Action = &routev3.Route_DirectResponse{DirectResponse: d}
	case len(h.Route) == 0:
		rp.fail("route", "an http route needs route, redirect or directResponse", "add a destination")
		return r
	default:
		r.Action = &routev3.Route_Route{Route: b.routeAction(rp, h, s, port, known)}
	}
	for _, hd := range []*networking.Headers{h.Headers, rp.destHeaders} {
		if hd == nil {
			continue
		}
		if !checkHeaders(rp, hd) {
			return r
		}
		add, rm := headerOps(hd.Request)
		r.RequestHeadersToAdd, r.RequestHeadersToRemove = append(r.RequestHeadersToAdd, add...), append(r.RequestHeadersToRemove, rm...)
		add, rm = headerOps(hd.Response)
		r.ResponseHeadersToAdd, r.ResponseHeadersToRemove = append(r.ResponseHeadersToAdd, add...), append(r.ResponseHeadersToRemove, rm...)
	}
	if f := h.Fault; f != nil {
		if hf := fault(rp, f); hf != nil {
			perFilter(rp, r, FaultFilter, hf)
		}
	}
	if c := h.CorsPolicy; c != nil {
		if cp := corsPolicy(rp, c); cp != nil {
			perFilter(rp, r, CorsFilter, cp)
		}
	}
	return r
}

func perFilter(rp *routeProblems, r *routev3.Route, name string, m interface {
	proto.Message
	ValidateAll() error
}) {
	if err := m.ValidateAll(); err != nil {
		rp.fail(strings.TrimPrefix(name, "envoy.filters.http."), "invalid: "+err.Error(), "correct the field")
		return
	}
	a, err := anypb.New(m)
	if err != nil {
		rp.fail(name, err.Error(), "")
		return
	}
	if r.TypedPerFilterConfig == nil {
		r.TypedPerFilterConfig = map[string]*anypb.Any{}
	}
	r.TypedPerFilterConfig[name] = a
}

// destination resolves a destination to its cluster's name, service host and port; "" when
// it cannot.
func (b *builder) destination(rp *routeProblems, field string, d *networking.Destination, s *service, port uint32, known map[string]bool) (string, string, uint32) {
	if d == nil || d.Host == "" {
		rp.fail(field+".host", "a destination needs a host", "name the destination's host")
		return "", "", 0
	}
	ds := b.resolveDest(d.Host)
	if ds == nil {
		rp.fail(field+".host", fmt.Sprintf("%q is not a service of namespace %s", d.Host, b.in.Namespace), "name a Service of the waypoint's namespace")
		return "", "", 0
	}
	var p uint32
	switch {
	case d.Port != nil && d.Port.Number != 0:
		p = d.Port.Number
	case len(ds.ports) == 1:
		p = ds.ports[0].number
	case ds.port(port) != nil:
		p = port
	default:
		rp.fail(field+".port", fmt.Sprintf("service %s has several ports and none is %d", ds.host, port), "set destination.port.number")
		return "", "", 0
	}
	if ds.port(p) == nil {
		rp.fail(field+".port", fmt.Sprintf("service %s has no HTTP port %d", ds.host, p), "name an HTTP port of the service (named http…, http2…, grpc… or with that appProtocol)")
		return "", "", 0
	}
	name := ClusterName(p, d.Subset, ds.host)
	if d.Subset != "" && !known[name] {
		// As in Istio the route keeps naming the cluster, and its requests fail with 503
		// until the subset is defined: routing them elsewhere would be wrong.
		rp.b.problem(rp.kind, rp.meta, rp.field+"."+field+".subset", fmt.Sprintf("subset %q of %s is defined by no DestinationRule; its requests fail with 503", d.Subset, ds.host), "define the subset in a DestinationRule for "+ds.host)
	}
	return name, ds.host, p
}

func (b *builder) routeAction(rp *routeProblems, h *networking.HTTPRoute, s *service, port uint32, known map[string]bool) *routev3.RouteAction {
	a := &routev3.RouteAction{Timeout: durationpb.New(0), RetryPolicy: defaultRetry()}
	type dest struct {
		cluster string
		weight  uint32
		rd      *networking.HTTPRouteDestination
	}
	var dests []dest
	n := 0 // destinations given
	for _, rd := range h.Route {
		if rd != nil {
			n++
		}
	}
	for i, rd := range h.Route {
		if rd == nil {
			continue
		}
		field := fmt.Sprintf("route[%d].destination", i)
		name, host, p := b.destination(rp, field, rd.Destination, s, port, known)
		if name == "" {
			return a
		}
		if n > 1 && rd.Weight <= 0 {
			continue // weight 0: no traffic
		}
		if a.HashPolicy == nil {
			a.HashPolicy = hashPolicies(b.effectivePolicy(host, p, rd.Destination.Subset))
		}
		dests = append(dests, dest{name, uint32(max(rd.Weight, 0)), rd})
	}
	switch len(dests) {
	case 0:
		rp.fail("route", "every destination has weight 0", "give a destination a positive weight")
		return a
	case 1:
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: dests[0].cluster}
		rp.destHeaders = dests[0].rd.Headers // a single destination's headers apply to the route
	default:
		wc := &routev3.WeightedCluster{}
		for _, d := range dests {
			cw := &routev3.WeightedCluster_ClusterWeight{Name: d.cluster, Weight: wrapperspb.UInt32(d.weight)}
			if hd := d.rd.Headers; hd != nil && checkHeaders(rp, hd) {
				cw.RequestHeadersToAdd, cw.RequestHeadersToRemove = headerOps(hd.Request)
				cw.ResponseHeadersToAdd, cw.ResponseHeadersToRemove = headerOps(hd.Response)
			}
			wc.Clusters = append(wc.Clusters, cw)
		}
		a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	if h.Timeout != nil {
		a.Timeout = durationpb.New(h.Timeout.AsDuration())
	}
	if rt := h.Retries; rt != nil {
		a.RetryPolicy = retryPolicy(rp, rt)
	}
	if rw := h.Rewrite; rw != nil {
		if rw.Uri != "" && rw.UriRegexRewrite != nil {
			rp.fail("rewrite", "uri and uriRegexRewrite exclude each other", "keep one")
		}
		if rw.Uri != "" {
			a.PrefixRewrite = rw.Uri
		}
		if rr := rw.UriRegexRewrite; rr != nil {
			if err := checkRegex(rr.Match); err != nil {
				rp.fail("rewrite.uriRegexRewrite.match", err.Error(), "use an RE2 regular expression")
			}
			a.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: rr.Match}, Substitution: rr.Rewrite}
		}
		if rw.Authority != "" {
			a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: rw.Authority}
		}
	}
	// Mirrors: the older mirror with mirrorPercent or mirrorPercentage, and mirrors.
	if h.Mirror != nil {
		pct := &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}
		//lint:ignore SA1019 the older field is still honoured
		if old := h.MirrorPercent; old != nil {
			pct = &typev3.FractionalPercent{Numerator: min(old.Value, 100), Denominator: typev3.FractionalPercent_HUNDRED}
		}
		if h.MirrorPercentage != nil {
			pct = percent(rp, "mirrorPercentage", h.MirrorPercentage)
		}
		if name, _, _ := b.destination(rp, "mirror", h.Mirror, s, port, known); name != "" {
			a.RequestMirrorPolicies = append(a.RequestMirrorPolicies, &routev3.RouteAction_RequestMirrorPolicy{Cluster: name, RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: pct}})
		}
	}
	for i, m := range h.Mirrors {
		if m == nil {
			continue
		}
		pct := &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}
		if m.Percentage != nil {
			pct = percent(rp, fmt.Sprintf("mirrors[%d].percentage", i), m.Percentage)
		}
		if name, _, _ := b.destination(rp, fmt.Sprintf("mirrors[%d].destination", i), m.Destination, s, port, known); name != "" {
			a.RequestMirrorPolicies = append(a.RequestMirrorPolicies, &routev3.RouteAction_RequestMirrorPolicy{Cluster: name, RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: pct}})
		}
	}
	return a
}

func percent(rp *routeProblems, field string, p *networking.Percent) *typev3.FractionalPercent {
	if p.Value < 0 || p.Value > 100 {
		rp.fail(field, fmt.Sprintf("%v is not a percentage", p.Value), "use a value from 0 to 100")
		return nil
	}
	return &typev3.FractionalPercent{Numerator: uint32(p.Value*10000 + 0.5), Denominator: typev3.FractionalPercent_MILLION}
}

func retryPolicy(rp *routeProblems, rt *networking.HTTPRetry) *routev3.RetryPolicy {
	if rt.Attempts <= 0 {
		return nil // retries disabled
	}
	p := &routev3.RetryPolicy{NumRetries: wrapperspb.UInt32(uint32(rt.Attempts)), RetryOn: istioRetryOn, RetriableStatusCodes: []uint32{503}}
	if rt.RetryOn != "" {
		var on []string
		p.RetriableStatusCodes = nil
		for _, c := range strings.Split(rt.RetryOn, ",") {
			c = strings.TrimSpace(c)
			if code, err := strconv.ParseUint(c, 10, 32); err == nil {
				if code < 100 || code > 599 {
					rp.ignore("retries.retryOn", fmt.Sprintf("%d is not an HTTP status", code), "use a status from 100 to 599")
					continue
				}
				p.RetriableStatusCodes = append(p.RetriableStatusCodes, uint32(code))
				continue
			}
			if c != "" {
				on = append(on, c)
			}
		}
		if len(p.RetriableStatusCodes) > 0 && !slices.Contains(on, "retriable-status-codes") {
			on = append(on, "retriable-status-codes")
		}
		p.RetryOn = strings.Join(on, ",")
	}
	if rt.PerTryTimeout != nil {
		p.PerTryTimeout = durationpb.New(rt.PerTryTimeout.AsDuration())
	}
	if rt.Backoff != nil {
		p.RetryBackOff = &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(rt.Backoff.AsDuration())}
	}
	if rt.RetryRemoteLocalities != nil || rt.RetryIgnorePreviousHosts != nil {
		rp.ignore("retries", "retryRemoteLocalities and retryIgnorePreviousHosts are not supported by the waypoint", "remove them")
	}
	return p
}

func redirect(rp *routeProblems, r *networking.HTTPRedirect) *routev3.RedirectAction {
	a := &routev3.RedirectAction{HostRedirect: r.Authority}
	if r.Uri != "" {
		a.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: r.Uri}
	}
	if r.PrefixRewrite != "" {
		a.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: r.PrefixRewrite}
	}
	switch p := r.RedirectPort.(type) {
	case *networking.HTTPRedirect_Port:
		a.PortRedirect = p.Port
	case *networking.HTTPRedirect_DerivePort:
		if p.DerivePort == networking.HTTPRedirect_FROM_REQUEST_PORT {
			rp.ignore("redirect.derivePort", "FROM_REQUEST_PORT is not supported by the waypoint", "set redirect.port")
		}
	}
	switch r.Scheme {
	case "":
	case "https":
		a.SchemeRewriteSpecifier = &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true}
	default:
		a.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: r.Scheme}
	}
	switch r.RedirectCode {
	case 0, 301:
		a.ResponseCode = routev3.RedirectAction_MOVED_PERMANENTLY
	case 302:
		a.ResponseCode = routev3.RedirectAction_FOUND
	case 303:
		a.ResponseCode = routev3.RedirectAction_SEE_OTHER
	case 307:
		a.ResponseCode = routev3.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		a.ResponseCode = routev3.RedirectAction_PERMANENT_REDIRECT
	default:
		rp.fail("redirect.redirectCode", fmt.Sprintf("%d is not a redirect status", r.RedirectCode), "use 301, 302, 303, 307 or 308")
	}
	return a
}

// checkHeaders reports header operations Envoy refuses: names that are not HTTP tokens,
// pseudo-headers and Host.
func checkHeaders(rp *routeProblems, hd *networking.Headers) bool {
	for _, o := range []*networking.Headers_HeaderOperations{hd.Request, hd.Response} {
		if o == nil {
			continue
		}
		names := append(append(sortedKeys(o.Set), sortedKeys(o.Add)...), o.Remove...)
		for _, n := range names {
			if !httpguts.ValidHeaderFieldName(n) || strings.EqualFold(n, "host") {
				rp.fail("headers", fmt.Sprintf("header %q cannot be modified", n), "use a valid header name other than Host and pseudo-headers (set the authority with rewrite.authority)")
				return false
			}
		}
	}
	return true
}

// headerOps translates header operations: set overwrites, add appends, remove removes.
func headerOps(o *networking.Headers_HeaderOperations) ([]*corev3.HeaderValueOption, []string) {
	if o == nil {
		return nil, nil
	}
	var add []*corev3.HeaderValueOption
	for _, k := range sortedKeys(o.Set) {
		add = append(add, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: o.Set[k]}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD})
	}
	for _, k := range sortedKeys(o.Add) {
		add = append(add, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: o.Add[k]}, AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD})
	}
	return add, slices.Clone(o.Remove)
}

func fault(rp *routeProblems, f *networking.HTTPFaultInjection) *faultv3.HTTPFault {
	out := &faultv3.HTTPFault{}
	if d := f.Delay; d != nil {
		fixed, ok := d.HttpDelayType.(*networking.HTTPFaultInjection_Delay_FixedDelay)
		if !ok || fixed.FixedDelay == nil {
			rp.fail("fault.delay", "only fixedDelay is supported", "use fixedDelay")
			return nil
		}
		//lint:ignore SA1019 the older integer percent is still honoured
		pct := faultPercent(rp, "fault.delay", d.Percentage, d.Percent)
		out.Delay = &commonfaultv3.FaultDelay{
			FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(fixed.FixedDelay.AsDuration())},
			Percentage:         pct,
		}
	}
	if ab := f.Abort; ab != nil {
		out.Abort = &faultv3.FaultAbort{Percentage: faultPercent(rp, "fault.abort", ab.Percentage, 0)}
		switch e := ab.ErrorType.(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			if e.HttpStatus < 200 || e.HttpStatus > 599 {
				rp.fail("fault.abort.httpStatus", fmt.Sprintf("%d is not an HTTP status Envoy can return", e.HttpStatus), "use a status from 200 to 599")
				return nil
			}
			out.Abort.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(e.HttpStatus)}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			var c codes.Code
			if err := c.UnmarshalJSON([]byte(strconv.Quote(e.GrpcStatus))); err != nil {
				rp.fail("fault.abort.grpcStatus", fmt.Sprintf("%q is not a gRPC status", e.GrpcStatus), "use a name such as UNAVAILABLE")
				return nil
			}
			out.Abort.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: uint32(c)}
		default:
			rp.fail("fault.abort", "only httpStatus and grpcStatus are supported", "use httpStatus")
			return nil
		}
	}
	return out
}

// faultPercent is percentage, else the older integer percent, else 100 %.
func faultPercent(rp *routeProblems, field string, p *networking.Percent, old int32) *typev3.FractionalPercent {
	switch {
	case p != nil:
		return percent(rp, field+".percentage", p)
	case old < 0 || old > 100:
		rp.fail(field+".percent", fmt.Sprintf("%d is not a percentage", old), "use a value from 0 to 100")
		return nil
	case old > 0:
		return &typev3.FractionalPercent{Numerator: uint32(old), Denominator: typev3.FractionalPercent_HUNDRED}
	}
	return &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}
}

func corsPolicy(rp *routeProblems, c *networking.CorsPolicy) *corsv3.CorsPolicy {
	out := &corsv3.CorsPolicy{
		AllowMethods:                 strings.Join(c.AllowMethods, ","),
		AllowHeaders:                 strings.Join(c.AllowHeaders, ","),
		ExposeHeaders:                strings.Join(c.ExposeHeaders, ","),
		AllowCredentials:             c.AllowCredentials,
		ForwardNotMatchingPreflights: wrapperspb.Bool(c.UnmatchedPreflights != networking.CorsPolicy_IGNORE),
	}
	if c.MaxAge != nil {
		out.MaxAge = strconv.FormatInt(int64(c.MaxAge.AsDuration()/time.Second), 10)
	}
	//lint:ignore SA1019 the older field is still honoured
	for _, o := range c.AllowOrigin {
		out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: o}})
	}
	for i, o := range c.AllowOrigins {
		m := stringMatcher(rp, fmt.Sprintf("corsPolicy.allowOrigins[%d]", i), o)
		if m == nil {
			rp.fail(fmt.Sprintf("corsPolicy.allowOrigins[%d]", i), "an origin needs exact, prefix or regex", "set one")
			return nil
		}
		out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, m)
	}
	return out
}

func checkRegex(re string) error {
	if _, err := regexp.Compile(re); err != nil {
		return fmt.Errorf("invalid regex %q: %v", re, err)
	}
	return nil
}

// stringMatcher translates an Istio StringMatch; nil for an empty one (header presence).
func stringMatcher(rp *routeProblems, field string, m *networking.StringMatch) *matcherv3.StringMatcher {
	if m == nil {
		return nil
	}
	switch v := m.MatchType.(type) {
	case *networking.StringMatch_Exact:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v.Exact}}
	case *networking.StringMatch_Prefix:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v.Prefix}}
	case *networking.StringMatch_Regex:
		if err := checkRegex(v.Regex); err != nil {
			rp.fail(field+".regex", err.Error(), "use an RE2 regular expression")
			return nil
		}
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v.Regex}}}
	}
	return nil
}

// routeMatch translates one match; nil m matches every request.
func routeMatch(rp *routeProblems, m *networking.HTTPMatchRequest) *routev3.RouteMatch {
	out := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if m == nil {
		return out
	}
	if m.Uri != nil {
		switch v := m.Uri.MatchType.(type) {
		case *networking.StringMatch_Exact:
			out.PathSpecifier = &routev3.RouteMatch_Path{Path: v.Exact}
		case *networking.StringMatch_Prefix:
			out.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: v.Prefix}
		case *networking.StringMatch_Regex:
			if err := checkRegex(v.Regex); err != nil {
				rp.fail("uri.regex", err.Error(), "use an RE2 regular expression")
				return nil
			}
			out.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v.Regex}}
		}
		if m.IgnoreUriCase {
			out.CaseSensitive = wrapperspb.Bool(false)
		}
	}
	header := func(field, name string, sm *networking.StringMatch, invert bool) {
		h := &routev3.HeaderMatcher{Name: name, InvertMatch: invert}
		if s := stringMatcher(rp, field, sm); s != nil {
			h.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: s}
		} else {
			h.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
		}
		out.Headers = append(out.Headers, h)
	}
	if m.Method != nil {
		header("method", ":method", m.Method, false)
	}
	if m.Authority != nil {
		header("authority", ":authority", m.Authority, false)
	}
	if m.Scheme != nil {
		header("scheme", ":scheme", m.Scheme, false)
	}
	for _, k := range sortedKeys(m.Headers) {
		header("headers."+k, strings.ToLower(k), m.Headers[k], false)
	}
	for _, k := range sortedKeys(m.WithoutHeaders) {
		header("withoutHeaders."+k, strings.ToLower(k), m.WithoutHeaders[k], true)
	}
	for _, k := range sortedKeys(m.QueryParams) {
		q := &routev3.QueryParameterMatcher{Name: k}
		if s := stringMatcher(rp, "queryParams."+k, m.QueryParams[k]); s != nil {
			q.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: s}
		} else {
			q.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		}
		out.QueryParameters = append(out.QueryParameters, q)
	}
	// What the waypoint cannot check must not widen the route: the match is dropped.
	if len(m.SourceLabels) > 0 {
		rp.fail("sourceLabels", "the waypoint cannot match the client's labels", "use an AuthorizationPolicy or a header set by the client")
	}
	if m.SourceNamespace != "" {
		rp.fail("sourceNamespace", "the waypoint cannot match the client's namespace", "use an AuthorizationPolicy or a header set by the client")
	}
	if len(m.Gateways) > 0 && !slices.Contains(m.Gateways, "mesh") {
		rp.drop = true // for ingress gateways only
	}
	return out
}

// hashPolicies is the route hash policy of a consistent-hash load balancer, nil for others.
func hashPolicies(policy *networking.TrafficPolicy) []*routev3.RouteAction_HashPolicy {
	ch := policy.GetLoadBalancer().GetConsistentHash()
	if ch == nil {
		return nil
	}
	hp := &routev3.RouteAction_HashPolicy{}
	switch k := ch.HashKey.(type) {
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
		hp.PolicySpecifier = &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: strings.ToLower(k.HttpHeaderName)}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
		c := &routev3.RouteAction_HashPolicy_Cookie{Name: k.HttpCookie.GetName(), Path: k.HttpCookie.GetPath()}
		if t := k.HttpCookie.GetTtl(); t != nil {
			c.Ttl = durationpb.New(t.AsDuration())
		}
		hp.PolicySpecifier = &routev3.RouteAction_HashPolicy_Cookie_{Cookie: c}
	case *networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
		hp.PolicySpecifier = &routev3.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
		hp.PolicySpecifier = &routev3.RouteAction_HashPolicy_QueryParameter_{QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: k.HttpQueryParameterName}}
	default:
		return nil
	}
	return []*routev3.RouteAction_HashPolicy{hp}
}

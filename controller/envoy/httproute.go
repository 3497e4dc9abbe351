package envoy

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// InvalidBackendCluster is the cluster named, and never served, for the share of requests of
// an HTTPRoute backendRef that cannot be resolved: as Gateway API requires, those requests
// fail with 500 (the route's cluster_not_found_response_code).
const InvalidBackendCluster = "weft_invalid_backend"

// routeRef is one attachment of an HTTPRoute to a service: port 0 for all its HTTP ports.
type routeRef struct {
	hr   *gatewayv1.HTTPRoute
	port uint32
}

// attached returns the HTTPRoutes routing host on port, oldest first.
func (b *builder) attached(host string, port uint32) []routeRef {
	var out []routeRef
	for _, r := range b.hrs[host] {
		if (r.port == 0 || r.port == port) && !slices.ContainsFunc(out, func(o routeRef) bool { return o.hr == r.hr }) {
			out = append(out, r)
		}
	}
	return out
}

// indexHTTPRoutes finds the HTTPRoutes of the namespace attached to its Services (parentRefs
// of kind Service, group ""): the producer routes that Istio's waypoint applies. Several
// routes of a service are merged, their rules ordered by Gateway API precedence.
func (b *builder) indexHTTPRoutes() {
	hrs := slices.Clone(b.in.HTTPRoutes)
	slices.SortFunc(hrs, func(x, y *gatewayv1.HTTPRoute) int { return oldestFirst(x.ObjectMeta, y.ObjectMeta) })
	for _, hr := range hrs {
		if hr.Namespace != b.in.Namespace {
			continue
		}
		attached := false
		for i, p := range hr.Spec.ParentRefs {
			field := fmt.Sprintf("spec.parentRefs[%d]", i)
			group, kind := "gateway.networking.k8s.io", "Gateway"
			if p.Group != nil {
				group = string(*p.Group)
			}
			if p.Kind != nil {
				kind = string(*p.Kind)
			}
			if group != "" || kind != "Service" {
				continue // a Gateway's route, not the mesh's
			}
			if p.Namespace != nil && string(*p.Namespace) != hr.Namespace {
				b.problem("HTTPRoute", hr.ObjectMeta, field+".namespace", "consumer routes (to a Service of another namespace) are not supported by the waypoint; ignored", "create the route in the Service's namespace")
				continue
			}
			s := b.services[string(p.Name)+"."+hr.Namespace+".svc."+b.domain]
			if s == nil {
				b.problem("HTTPRoute", hr.ObjectMeta, field+".name", fmt.Sprintf("Service %q is not a service of namespace %s; ignored", p.Name, b.in.Namespace), "name a Service of the route's namespace")
				continue
			}
			if len(s.ports) == 0 {
				b.problem("HTTPRoute", hr.ObjectMeta, field, fmt.Sprintf("service %s has no HTTP port; the route does not apply", s.host), "name the service's HTTP ports http…, http2… or grpc…, or set their appProtocol")
				continue
			}
			ref := routeRef{hr: hr}
			if p.Port != nil {
				if s.port(uint32(*p.Port)) == nil {
					b.problem("HTTPRoute", hr.ObjectMeta, field+".port", fmt.Sprintf("service %s has no HTTP port %d; ignored", s.host, *p.Port), "name an HTTP port of the service")
					continue
				}
				ref.port = uint32(*p.Port)
			}
			if p.SectionName != nil {
				i := slices.IndexFunc(s.ports, func(sp svcPort) bool { return sp.name == string(*p.SectionName) })
				if i < 0 {
					b.problem("HTTPRoute", hr.ObjectMeta, field+".sectionName", fmt.Sprintf("service %s has no HTTP port named %q; ignored", s.host, *p.SectionName), "name an HTTP port of the service, or use port")
					continue
				}
				if ref.port != 0 && ref.port != s.ports[i].number {
					b.problem("HTTPRoute", hr.ObjectMeta, field+".sectionName", "sectionName and port name different ports; ignored", "keep one")
					continue
				}
				ref.port = s.ports[i].number
			}
			b.hrs[s.host] = append(b.hrs[s.host], ref)
			attached = true
		}
		if attached && len(hr.Spec.Hostnames) > 0 {
			b.problem("HTTPRoute", hr.ObjectMeta, "spec.hostnames", "hostnames do not apply to a route of a Service (the Service's names do); ignored", "remove hostnames")
		}
	}
}

// hrMatch is one match of an HTTPRoute rule: the unit Gateway API orders by precedence.
type hrMatch struct {
	hr          *gatewayv1.HTTPRoute
	rule, match int
	m           *gatewayv1.HTTPRouteMatch // nil: every request
}

// precedence orders matches as Gateway API (and Istio) do: exact path, then prefix (longer
// first), then regular expression; then a method match; then more header matches; then more
// query parameter matches; then the older route, and the order of rules and matches.
func precedence(x, y hrMatch) int {
	rank := func(m *gatewayv1.HTTPRouteMatch) (int, int) {
		t, v := pathOf(m)
		switch t {
		case gatewayv1.PathMatchExact:
			return 3, len(v)
		case gatewayv1.PathMatchRegularExpression:
			return 1, len(v)
		}
		return 2, len(v)
	}
	count := func(m *gatewayv1.HTTPRouteMatch) (int, int, int) {
		if m == nil {
			return 0, 0, 0
		}
		method := 0
		if m.Method != nil {
			method = 1
		}
		return method, len(m.Headers), len(m.QueryParams)
	}
	rx, lx := rank(x.m)
	ry, ly := rank(y.m)
	mx, hx, qx := count(x.m)
	my, hy, qy := count(y.m)
	return cmp.Or(cmp.Compare(ry, rx), cmp.Compare(ly, lx), cmp.Compare(my, mx), cmp.Compare(hy, hx), cmp.Compare(qy, qx))
}

func pathOf(m *gatewayv1.HTTPRouteMatch) (gatewayv1.PathMatchType, string) {
	t, v := gatewayv1.PathMatchPathPrefix, "/"
	if m != nil && m.Path != nil {
		if m.Path.Type != nil {
			t = *m.Path.Type
		}
		if m.Path.Value != nil {
			v = *m.Path.Value
		}
	}
	return t, v
}

// hrRoutes translates the HTTPRoutes attached to a service on port: an Envoy route per
// match, ordered by precedence. Requests no rule matches get 404, as in Istio.
func (b *builder) hrRoutes(refs []routeRef, port uint32, known map[string]bool) []*routev3.Route {
	var ms []hrMatch
	for _, ref := range refs {
		for i := range ref.hr.Spec.Rules {
			rule := &ref.hr.Spec.Rules[i]
			if len(rule.Matches) == 0 {
				ms = append(ms, hrMatch{hr: ref.hr, rule: i})
			}
			for j := range rule.Matches {
				ms = append(ms, hrMatch{hr: ref.hr, rule: i, match: j, m: &rule.Matches[j]})
			}
		}
	}
	slices.SortStableFunc(ms, precedence)
	type key struct {
		hr   *gatewayv1.HTTPRoute
		rule int
	}
	actions := map[key]*routev3.Route{}
	var out []*routev3.Route
	for _, m := range ms {
		rule := &m.hr.Spec.Rules[m.rule]
		k := key{m.hr, m.rule}
		action, done := actions[k]
		if !done {
			rp := &routeProblems{b: b, kind: "HTTPRoute", meta: m.hr.ObjectMeta, field: fmt.Sprintf("spec.rules[%d]", m.rule)}
			action = b.hrAction(rp, rule, port, known)
			if rp.drop {
				action = nil
			}
			actions[k] = action
		}
		if action == nil {
			continue
		}
		field := fmt.Sprintf("spec.rules[%d].matches[%d]", m.rule, m.match)
		mp := &routeProblems{b: b, kind: "HTTPRoute", meta: m.hr.ObjectMeta, field: field}
		match := hrRouteMatch(mp, m.m)
		if mp.drop {
			continue
		}
		r := proto.Clone(action).(*routev3.Route)
		r.Name, r.Match = fmt.Sprintf("%s.%s.%d.%d", m.hr.Namespace, m.hr.Name, m.rule, m.match), match
		prefixRewrite(mp, rule, r, m.m)
		if mp.drop {
			continue
		}
		if err := r.ValidateAll(); err != nil {
			b.problem("HTTPRoute", m.hr.ObjectMeta, field, "cannot be translated ("+err.Error()+"); the match is dropped", "correct the rule")
			continue
		}
		out = append(out, r)
	}
	return out
}

// hrRouteMatch translates one match of a rule; nil m matches every request.
func hrRouteMatch(rp *routeProblems, m *gatewayv1.HTTPRouteMatch) *routev3.RouteMatch {
	out := &routev3.RouteMatch{}
	t, v := pathOf(m)
	switch t {
	case gatewayv1.PathMatchExact:
		out.PathSpecifier = &routev3.RouteMatch_Path{Path: v}
	case gatewayv1.PathMatchPathPrefix:
		if p := strings.TrimRight(v, "/"); p == "" {
			out.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
		} else {
			// Gateway API prefixes match whole path elements: /foo matches /foo/bar, not /foobar.
			out.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: p}
		}
	case gatewayv1.PathMatchRegularExpression:
		if err := checkRegex(v); err != nil {
			rp.fail("path.value", err.Error(), "use an RE2 regular expression")
			return nil
		}
		out.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v}}
	default:
		rp.fail("path.type", fmt.Sprintf("path match type %q is not supported", t), "use Exact, PathPrefix or RegularExpression")
		return nil
	}
	if m == nil {
		return out
	}
	matcher := func(field string, t *string, v string) *matcherv3.StringMatcher {
		switch {
		case t == nil || *t == "Exact":
			return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}
		case *t == "RegularExpression":
			if err := checkRegex(v); err != nil {
				rp.fail(field+".value", err.Error(), "use an RE2 regular expression")
				return nil
			}
			return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v}}}
		}
		rp.fail(field+".type", fmt.Sprintf("match type %q is not supported", *t), "use Exact or RegularExpression")
		return nil
	}
	if m.Method != nil {
		out.Headers = append(out.Headers, &routev3.HeaderMatcher{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: string(*m.Method)}}}})
	}
	seen := map[string]bool{}
	for i, h := range m.Headers {
		name := strings.ToLower(string(h.Name))
		if seen[name] {
			continue // the first match of a header wins
		}
		seen[name] = true
		sm := matcher(fmt.Sprintf("headers[%d]", i), (*string)(h.Type), h.Value)
		if sm == nil {
			return nil
		}
		out.Headers = append(out.Headers, &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}})
	}
	seen = map[string]bool{}
	for i, q := range m.QueryParams {
		if seen[string(q.Name)] {
			continue
		}
		seen[string(q.Name)] = true
		sm := matcher(fmt.Sprintf("queryParams[%d]", i), (*string)(q.Type), q.Value)
		if sm == nil {
			return nil
		}
		out.QueryParameters = append(out.QueryParameters, &routev3.QueryParameterMatcher{Name: string(q.Name), QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm}})
	}
	return out
}

// prefixRewrite applies a rule's ReplacePrefixMatch (of URLRewrite or RequestRedirect),
// which depends on the match's prefix.
func prefixRewrite(rp *routeProblems, rule *gatewayv1.HTTPRouteRule, r *routev3.Route, m *gatewayv1.HTTPRouteMatch) {
	for i, f := range rule.Filters {
		var pm *gatewayv1.HTTPPathModifier
		switch {
		case f.Type == gatewayv1.HTTPRouteFilterURLRewrite && f.URLRewrite != nil:
			pm = f.URLRewrite.Path
		case f.Type == gatewayv1.HTTPRouteFilterRequestRedirect && f.RequestRedirect != nil:
			pm = f.RequestRedirect.Path
		}
		if pm == nil || pm.Type != gatewayv1.PrefixMatchHTTPPathModifier {
			continue
		}
		repl := "/"
		if pm.ReplacePrefixMatch != nil && *pm.ReplacePrefixMatch != "" {
			repl = *pm.ReplacePrefixMatch
		}
		t, prefix := pathOf(m)
		if t != gatewayv1.PathMatchPathPrefix {
			rp.fail(fmt.Sprintf("filters[%d] of spec.rules", i), "ReplacePrefixMatch needs a PathPrefix match", "match a path prefix, or use ReplaceFullPath")
			return
		}
		prefix = strings.TrimRight(prefix, "/")
		// The matched prefix and the slashes after it are replaced, so that /foo/bar with
		// prefix /foo and replacement / becomes /bar, not //bar.
		var rw *matcherv3.RegexMatchAndSubstitute
		if strings.HasSuffix(repl, "/") {
			rw = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^" + regexp.QuoteMeta(prefix) + "/*"}, Substitution: repl}
		}
		switch a := r.Action.(type) {
		case *routev3.Route_Route:
			if rw != nil {
				a.Route.RegexRewrite = rw
			} else {
				a.Route.PrefixRewrite = repl
			}
		case *routev3.Route_Redirect:
			if rw != nil {
				a.Redirect.PathRewriteSpecifier = &routev3.RedirectAction_RegexRewrite{RegexRewrite: rw}
			} else {
				a.Redirect.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: repl}
			}
		}
	}
}

// hrAction translates a rule's backends, filters, timeouts and retry into a route without
// name and match.
func (b *builder) hrAction(rp *routeProblems, rule *gatewayv1.HTTPRouteRule, port uint32, known map[string]bool) *routev3.Route {
	r := &routev3.Route{}
	a := &routev3.RouteAction{Timeout: durationpb.New(0), RetryPolicy: defaultRetry(), ClusterNotFoundResponseCode: routev3.RouteAction_INTERNAL_SERVER_ERROR}
	var redirect *routev3.RedirectAction
	for i, f := range rule.Filters {
		field := fmt.Sprintf("filters[%d]", i)
		switch f.Type {
		case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
			add, rm, ok := headerFilter(rp, field+".requestHeaderModifier", f.RequestHeaderModifier)
			if !ok {
				return r
			}
			r.RequestHeadersToAdd, r.RequestHeadersToRemove = append(r.RequestHeadersToAdd, add...), append(r.RequestHeadersToRemove, rm...)
		case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
			add, rm, ok := headerFilter(rp, field+".responseHeaderModifier", f.ResponseHeaderModifier)
			if !ok {
				return r
			}
			r.ResponseHeadersToAdd, r.ResponseHeadersToRemove = append(r.ResponseHeadersToAdd, add...), append(r.ResponseHeadersToRemove, rm...)
		case gatewayv1.HTTPRouteFilterRequestRedirect:
			if f.RequestRedirect == nil {
				rp.fail(field+".requestRedirect", "a RequestRedirect filter needs requestRedirect", "set it")
				return r
			}
			redirect = hrRedirect(rp, field+".requestRedirect", f.RequestRedirect)
		case gatewayv1.HTTPRouteFilterURLRewrite:
			rw := f.URLRewrite
			if rw == nil {
				rp.fail(field+".urlRewrite", "a URLRewrite filter needs urlRewrite", "set it")
				return r
			}
			if rw.Hostname != nil {
				a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: string(*rw.Hostname)}
			}
			if p := rw.Path; p != nil && p.Type == gatewayv1.FullPathHTTPPathModifier {
				a.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/.*$"}, Substitution: cmp.Or(deref(p.ReplaceFullPath), "/")}
			}
		case gatewayv1.HTTPRouteFilterRequestMirror:
			m := f.RequestMirror
			if m == nil {
				rp.fail(field+".requestMirror", "a RequestMirror filter needs requestMirror", "set it")
				return r
			}
			pct := &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}
			switch {
			case m.Percent != nil:
				pct.Numerator = uint32(min(max(*m.Percent, 0), 100))
			case m.Fraction != nil:
				den := int64(100)
				if m.Fraction.Denominator != nil && *m.Fraction.Denominator > 0 {
					den = int64(*m.Fraction.Denominator)
				}
				num := min(max(int64(m.Fraction.Numerator), 0), den)
				pct = &typev3.FractionalPercent{Numerator: uint32(num * 1_000_000 / den), Denominator: typev3.FractionalPercent_MILLION}
			}
			if name := b.backend(rp, field+".requestMirror.backendRef", m.BackendRef, port, known); name != InvalidBackendCluster {
				a.RequestMirrorPolicies = append(a.RequestMirrorPolicies, &routev3.RouteAction_RequestMirrorPolicy{Cluster: name, RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: pct}})
			}
		case gatewayv1.HTTPRouteFilterCORS:
			rp.ignore(field, "the CORS filter is not supported by the waypoint yet", "remove it, or use a VirtualService corsPolicy")
		default:
			rp.fail(field, fmt.Sprintf("filter %q is not supported by the waypoint", f.Type), "remove the filter")
			return r
		}
	}
	if redirect != nil {
		if len(rule.BackendRefs) > 0 {
			rp.ignore("backendRefs", "a rule with a RequestRedirect does not forward", "remove the backendRefs or the redirect")
		}
		r.Action = &routev3.Route_Redirect{Redirect: redirect}
		return r
	}
	type dest struct {
		cluster string
		weight  uint32
		index   int
	}
	var dests []dest
	for i := range rule.BackendRefs {
		ref := &rule.BackendRefs[i]
		field := fmt.Sprintf("backendRefs[%d]", i)
		w := int32(1)
		if ref.Weight != nil {
			w = *ref.Weight
		}
		name := b.backend(rp, field, ref.BackendObjectReference, port, known)
		if w <= 0 {
			continue // weight 0: no traffic
		}
		if j := slices.IndexFunc(dests, func(d dest) bool { return d.cluster == InvalidBackendCluster }); name == InvalidBackendCluster && j >= 0 {
			dests[j].weight += uint32(w) // one entry for the failing share
			continue
		}
		dests = append(dests, dest{name, uint32(w), i})
	}
	if len(dests) == 0 {
		// Gateway API: a rule without backends (or all of weight 0) answers 500.
		r.Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 500}}
		return r
	}
	backendHeaders := func(i int, ref *gatewayv1.HTTPBackendRef) (add []*corev3.HeaderValueOption, rm []string, radd []*corev3.HeaderValueOption, rrm []string, ok bool) {
		for j, f := range ref.Filters {
			field := fmt.Sprintf("backendRefs[%d].filters[%d]", i, j)
			switch f.Type {
			case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
				a, r, ok := headerFilter(rp, field+".requestHeaderModifier", f.RequestHeaderModifier)
				if !ok {
					return nil, nil, nil, nil, false
				}
				add, rm = append(add, a...), append(rm, r...)
			case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
				a, r, ok := headerFilter(rp, field+".responseHeaderModifier", f.ResponseHeaderModifier)
				if !ok {
					return nil, nil, nil, nil, false
				}
				radd, rrm = append(radd, a...), append(rrm, r...)
			default:
				rp.fail(field, fmt.Sprintf("filter %q of a backendRef is not supported by the waypoint", f.Type), "move the filter to the rule")
				return nil, nil, nil, nil, false
			}
		}
		return add, rm, radd, rrm, true
	}
	if len(dests) == 1 {
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: dests[0].cluster}
		add, rm, radd, rrm, ok := backendHeaders(dests[0].index, &rule.BackendRefs[dests[0].index])
		if !ok {
			return r
		}
		r.RequestHeadersToAdd, r.RequestHeadersToRemove = append(r.RequestHeadersToAdd, add...), append(r.RequestHeadersToRemove, rm...)
		r.ResponseHeadersToAdd, r.ResponseHeadersToRemove = append(r.ResponseHeadersToAdd, radd...), append(r.ResponseHeadersToRemove, rrm...)
	} else {
		wc := &routev3.WeightedCluster{}
		for _, d := range dests {
			cw := &routev3.WeightedCluster_ClusterWeight{Name: d.cluster, Weight: wrapperspb.UInt32(d.weight)}
			var ok bool
			cw.RequestHeadersToAdd, cw.RequestHeadersToRemove, cw.ResponseHeadersToAdd, cw.ResponseHeadersToRemove, ok = backendHeaders(d.index, &rule.BackendRefs[d.index])
			if !ok {
				return r
			}
			wc.Clusters = append(wc.Clusters, cw)
		}
		a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	if t := rule.Timeouts; t != nil {
		if t.Request != nil {
			if d, ok := duration(rp, "timeouts.request", *t.Request); ok {
				a.Timeout = durationpb.New(d)
			}
		}
		if t.BackendRequest != nil {
			if d, ok := duration(rp, "timeouts.backendRequest", *t.BackendRequest); ok && d > 0 {
				a.RetryPolicy.PerTryTimeout = durationpb.New(d)
			}
		}
	}
	if rt := rule.Retry; rt != nil {
		if rt.Attempts != nil && *rt.Attempts <= 0 {
			a.RetryPolicy = nil
		} else {
			if rt.Attempts != nil {
				a.RetryPolicy.NumRetries = wrapperspb.UInt32(uint32(*rt.Attempts))
			}
			if len(rt.Codes) > 0 {
				a.RetryPolicy.RetriableStatusCodes = nil
				for _, c := range rt.Codes {
					a.RetryPolicy.RetriableStatusCodes = append(a.RetryPolicy.RetriableStatusCodes, uint32(c))
				}
			}
			if rt.Backoff != nil {
				if d, ok := duration(rp, "retry.backoff", *rt.Backoff); ok && d > 0 {
					a.RetryPolicy.RetryBackOff = &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(d)}
				}
			}
		}
	}
	if rule.SessionPersistence != nil {
		rp.ignore("sessionPersistence", "session persistence is not supported by the waypoint", "remove it, or use a DestinationRule consistentHash")
	}
	r.Action = &routev3.Route_Route{Route: a}
	return r
}

func deref[T ~string](p *T) string {
	if p == nil {
		return ""
	}
	return string(*p)
}

// duration parses a Gateway API duration; 0 disables the timeout.
func duration(rp *routeProblems, field string, d gatewayv1.Duration) (time.Duration, bool) {
	v, err := time.ParseDuration(string(d))
	if err != nil || v < 0 {
		rp.ignore(field, fmt.Sprintf("%q is not a duration", d), "use a duration such as 10s or 500ms")
		return 0, false
	}
	return v, true
}

// backend resolves a backendRef to the name of its cluster, InvalidBackendCluster when it
// cannot (its requests then fail with 500).
func (b *builder) backend(rp *routeProblems, field string, ref gatewayv1.BackendObjectReference, port uint32, known map[string]bool) string {
	group, kind := deref(ref.Group), "Service"
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	invalid := func(f, msg, fix string) string {
		rp.b.problem(rp.kind, rp.meta, rp.field+"."+field+f, msg+"; its requests fail with 500", fix)
		return InvalidBackendCluster
	}
	if ref.Namespace != nil && string(*ref.Namespace) != rp.meta.Namespace {
		return invalid(".namespace", "backends of other namespaces (which need a ReferenceGrant) are not supported by the waypoint", "route to a backend of the route's namespace")
	}
	var s *service
	switch {
	case group == "" && kind == "Service":
		s = b.services[string(ref.Name)+"."+rp.meta.Namespace+".svc."+b.domain]
		if s == nil {
			return invalid(".name", fmt.Sprintf("Service %q is not a service of namespace %s", ref.Name, b.in.Namespace), "name a Service of the route's namespace")
		}
	case group == "networking.istio.io" && kind == "Hostname":
		s = b.resolveDest(string(ref.Name))
		if s == nil {
			return invalid(".name", fmt.Sprintf("host %q is neither a Service of namespace %s nor a ServiceEntry host", ref.Name, b.in.Namespace), "name a Service or a ServiceEntry host")
		}
	case group == "networking.istio.io" && kind == "ServiceEntry":
		s = b.ses[string(ref.Name)]
		if s == nil {
			return invalid(".name", fmt.Sprintf("ServiceEntry %q of namespace %s has no usable host", ref.Name, b.in.Namespace), "name a ServiceEntry with a DNS or STATIC host and an HTTP port")
		}
	default:
		return invalid(".kind", fmt.Sprintf("backends of kind %s (group %q) are not supported", kind, group), "use a Service, or a networking.istio.io Hostname or ServiceEntry")
	}
	var p uint32
	switch {
	case ref.Port != nil:
		p = uint32(*ref.Port)
	case s.svc == nil && len(s.ports) == 1:
		p = s.ports[0].number
	case s.svc == nil && s.port(port) != nil:
		p = port
	default:
		return invalid(".port", "a backendRef to a Service needs a port", "set port")
	}
	if s.port(p) == nil {
		return invalid(".port", fmt.Sprintf("%s has no HTTP port %d", s.host, p), "name an HTTP port of the backend (named http…, http2…, grpc… or with that appProtocol)")
	}
	name := ClusterName(p, "", s.host)
	if !known[name] {
		return invalid("", "the cluster "+name+" was not built", "see the problems of its Service or ServiceEntry")
	}
	return name
}

// headerFilter translates a header modifier: set overwrites, add appends, remove removes.
func headerFilter(rp *routeProblems, field string, f *gatewayv1.HTTPHeaderFilter) ([]*corev3.HeaderValueOption, []string, bool) {
	if f == nil {
		rp.fail(field, "the filter needs its configuration", "set it")
		return nil, nil, false
	}
	var names []string
	for _, h := range f.Set {
		names = append(names, string(h.Name))
	}
	for _, h := range f.Add {
		names = append(names, string(h.Name))
	}
	for _, n := range append(names, f.Remove...) {
		if !httpguts.ValidHeaderFieldName(n) || strings.EqualFold(n, "host") {
			rp.fail(field, fmt.Sprintf("header %q cannot be modified", n), "use a valid header name other than Host and pseudo-headers (set the host with a URLRewrite hostname)")
			return nil, nil, false
		}
	}
	var add []*corev3.HeaderValueOption
	for _, h := range f.Set {
		add = append(add, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: strings.ToLower(string(h.Name)), Value: h.Value}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD})
	}
	for _, h := range f.Add {
		add = append(add, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: strings.ToLower(string(h.Name)), Value: h.Value}, AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD})
	}
	rm := make([]string, 0, len(f.Remove))
	for _, n := range f.Remove {
		rm = append(rm, strings.ToLower(n))
	}
	return add, rm, true
}

// hrRedirect translates a RequestRedirect; a ReplacePrefixMatch path is set per match by
// prefixRewrite.
func hrRedirect(rp *routeProblems, field string, f *gatewayv1.HTTPRequestRedirectFilter) *routev3.RedirectAction {
	a := &routev3.RedirectAction{HostRedirect: deref(f.Hostname), ResponseCode: routev3.RedirectAction_FOUND}
	switch s := deref(f.Scheme); s {
	case "":
	case "https":
		a.SchemeRewriteSpecifier = &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true}
	default:
		a.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: s}
	}
	if f.Port != nil {
		a.PortRedirect = uint32(*f.Port)
	}
	if p := f.Path; p != nil && p.Type == gatewayv1.FullPathHTTPPathModifier {
		a.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: cmp.Or(deref(p.ReplaceFullPath), "/")}
	}
	if f.StatusCode != nil {
		switch *f.StatusCode {
		case 301:
			a.ResponseCode = routev3.RedirectAction_MOVED_PERMANENTLY
		case 302:
		case 303:
			a.ResponseCode = routev3.RedirectAction_SEE_OTHER
		case 307:
			a.ResponseCode = routev3.RedirectAction_TEMPORARY_REDIRECT
		case 308:
			a.ResponseCode = routev3.RedirectAction_PERMANENT_REDIRECT
		default:
			rp.fail(field+".statusCode", fmt.Sprintf("%d is not a redirect status", *f.StatusCode), "use 301, 302, 303, 307 or 308")
		}
	}
	return a
}

package rbac

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	securityv1beta1 "istio.io/api/security/v1beta1"

	"github.com/weftmesh/weft/controller/translate"
)

// problemKind is why a part of a rule is not enforced as written.
type problemKind int

const (
	problemUnsupported problemKind = iota // valid, but the waypoint cannot check it
	problemInvalid                        // malformed
)

type problem struct {
	kind   problemKind
	path   string // e.g. rules[0].from[1].source.ipBlocks
	detail string // what and the fix
}

// problemsMessage describes ps for the policy's status.
func problemsMessage(action securityv1beta1.AuthorizationPolicy_Action, ps []problem) (msg string, invalid bool) {
	var unsupported, bad []string
	for _, p := range ps {
		switch p.kind {
		case problemUnsupported:
			unsupported = append(unsupported, p.path+" ("+p.detail+")")
		case problemInvalid:
			bad = append(bad, p.path+": "+p.detail)
		}
	}
	var consequence string
	switch action {
	case securityv1beta1.AuthorizationPolicy_ALLOW:
		consequence = "Within an ALLOW policy, a rule with such a field is omitted (it matches nothing), which is more restrictive than requested."
	case securityv1beta1.AuthorizationPolicy_AUDIT:
		consequence = "Within an AUDIT policy, such a field is removed from its rule, which therefore records more requests."
	default:
		consequence = "Within a DENY or CUSTOM policy, such a field is removed from its rule, which therefore denies more requests."
	}
	var parts []string
	if len(unsupported) > 0 {
		parts = append(parts, "The waypoint does not support: "+strings.Join(unsupported, ", ")+".")
	}
	if len(bad) > 0 {
		parts = append(parts, "Invalid: "+strings.Join(bad, "; ")+".")
	}
	if len(parts) == 0 {
		return "", false
	}
	return strings.Join(parts, " ") + " " + consequence, len(bad) > 0
}

// ruleCtx translates one rule, collecting what it cannot enforce. A field it cannot enforce is
// left out of the rule: correct for DENY and AUDIT (the rule matches more); for ALLOW the
// caller drops the whole rule.
type ruleCtx struct {
	path      string
	namespace string
	problems  []problem
}

func (c *ruleCtx) add(kind problemKind, path, format string, args ...any) {
	c.problems = append(c.problems, problem{kind: kind, path: path, detail: fmt.Sprintf(format, args...)})
}

// rule translates r: principals from `from` and the source conditions, permissions from `to`
// and the destination conditions. Each side is one AND of conjuncts.
func (c *ruleCtx) rule(r *securityv1beta1.Rule) *rbacv3.Policy {
	if r == nil {
		c.add(problemInvalid, c.path, "a rule must not be null; write {} to match every request")
		return &rbacv3.Policy{Permissions: []*rbacv3.Permission{anyPermission()}, Principals: []*rbacv3.Principal{anyPrincipal()}}
	}
	var ids []*rbacv3.Principal
	var perms []*rbacv3.Permission
	if len(r.GetFrom()) > 0 {
		var sources []*rbacv3.Principal
		for j, f := range r.GetFrom() {
			path := fmt.Sprintf("%s.from[%d].source", c.path, j)
			if f.GetSource() == nil {
				c.add(problemInvalid, path, "must be set; name the sources, e.g. principals: [cluster.local/ns/shop/sa/web]")
				sources = append(sources, anyPrincipal())
				continue
			}
			sources = append(sources, andIDs(c.source(path, f.GetSource())))
		}
		ids = append(ids, orIDs(sources))
	}
	if len(r.GetTo()) > 0 {
		var ops []*rbacv3.Permission
		for j, t := range r.GetTo() {
			path := fmt.Sprintf("%s.to[%d].operation", c.path, j)
			if t.GetOperation() == nil {
				c.add(problemInvalid, path, "must be set; name the operation, e.g. methods: [GET]")
				ops = append(ops, anyPermission())
				continue
			}
			ops = append(ops, andRules(c.operation(path, t.GetOperation())))
		}
		perms = append(perms, orRules(ops))
	}
	for i, w := range r.GetWhen() {
		p, q := c.when(fmt.Sprintf("%s.when[%d]", c.path, i), w)
		ids = append(ids, p...)
		perms = append(perms, q...)
	}
	return &rbacv3.Policy{Permissions: []*rbacv3.Permission{andRules(perms)}, Principals: []*rbacv3.Principal{andIDs(ids)}}
}

// source returns the conjuncts of one source.
func (c *ruleCtx) source(path string, s *securityv1beta1.Source) []*rbacv3.Principal {
	if len(s.GetPrincipals())+len(s.GetNotPrincipals())+len(s.GetRequestPrincipals())+len(s.GetNotRequestPrincipals())+
		len(s.GetNamespaces())+len(s.GetNotNamespaces())+len(s.GetServiceAccounts())+len(s.GetNotServiceAccounts())+
		len(s.GetIpBlocks())+len(s.GetNotIpBlocks())+len(s.GetRemoteIpBlocks())+len(s.GetNotRemoteIpBlocks())+
		len(s.GetTrustDomains())+len(s.GetNotTrustDomains()) == 0 {
		c.add(problemInvalid, path, "must not be empty; name the sources, e.g. namespaces: [shop]")
		return nil
	}
	var out []*rbacv3.Principal
	pair := func(name string, vs, notVs []string, conv func(path string, vs []string) []*rbacv3.Principal) {
		if len(vs) > 0 {
			if ids := conv(path+"."+name, vs); ids != nil {
				out = append(out, orIDs(ids))
			}
		}
		if len(notVs) > 0 {
			notName := "not" + strings.ToUpper(name[:1]) + name[1:]
			if ids := conv(path+"."+notName, notVs); ids != nil {
				out = append(out, notID(orIDs(ids)))
			}
		}
	}
	pair("principals", s.GetPrincipals(), s.GetNotPrincipals(), c.principals)
	pair("namespaces", s.GetNamespaces(), s.GetNotNamespaces(), c.namespaces)
	if len(s.GetServiceAccounts())+len(s.GetNotServiceAccounts()) > 0 &&
		len(s.GetPrincipals())+len(s.GetNotPrincipals())+len(s.GetNamespaces())+len(s.GetNotNamespaces()) > 0 {
		c.add(problemInvalid, path+".serviceAccounts", "cannot be set with namespaces or principals; use one or the other")
	} else {
		pair("serviceAccounts", s.GetServiceAccounts(), s.GetNotServiceAccounts(), c.serviceAccounts)
	}
	pair("ipBlocks", s.GetIpBlocks(), s.GetNotIpBlocks(), c.directRemoteIPs)
	pair("remoteIpBlocks", s.GetRemoteIpBlocks(), s.GetNotRemoteIpBlocks(), c.remoteIPs)
	pair("trustDomains", s.GetTrustDomains(), s.GetNotTrustDomains(), c.trustDomains)
	if len(s.GetRequestPrincipals()) > 0 {
		c.add(problemUnsupported, path+".requestPrincipals", "JWT authentication is not supported by the waypoint; match principals instead")
	}
	if len(s.GetNotRequestPrincipals()) > 0 {
		c.add(problemUnsupported, path+".notRequestPrincipals", "JWT authentication is not supported by the waypoint; match notPrincipals instead")
	}
	return out
}

// operation returns the conjuncts of one operation.
func (c *ruleCtx) operation(path string, op *securityv1beta1.Operation) []*rbacv3.Permission {
	if len(op.GetPorts())+len(op.GetNotPorts())+len(op.GetHosts())+len(op.GetNotHosts())+
		len(op.GetMethods())+len(op.GetNotMethods())+len(op.GetPaths())+len(op.GetNotPaths()) == 0 {
		c.add(problemInvalid, path, "must not be empty; name the operation, e.g. methods: [GET]")
		return nil
	}
	var out []*rbacv3.Permission
	pair := func(name string, vs, notVs []string, conv func(path string, vs []string) []*rbacv3.Permission) {
		if len(vs) > 0 {
			if rs := conv(path+"."+name, vs); rs != nil {
				out = append(out, orRules(rs))
			}
		}
		if len(notVs) > 0 {
			notName := "not" + strings.ToUpper(name[:1]) + name[1:]
			if rs := conv(path+"."+notName, notVs); rs != nil {
				out = append(out, notRule(orRules(rs)))
			}
		}
	}
	pair("hosts", op.GetHosts(), op.GetNotHosts(), c.hosts)
	pair("methods", op.GetMethods(), op.GetNotMethods(), c.methods)
	pair("paths", op.GetPaths(), op.GetNotPaths(), c.paths)
	pair("ports", op.GetPorts(), op.GetNotPorts(), c.ports)
	return out
}

// when translates one condition into principal or permission conjuncts; none when it cannot
// be checked or is malformed (it is then left out of the rule).
func (c *ruleCtx) when(path string, w *securityv1beta1.Condition) (ids []*rbacv3.Principal, perms []*rbacv3.Permission) {
	key := w.GetKey()
	if key == "" {
		c.add(problemInvalid, path+".key", "must be set, e.g. request.headers[x-user]")
		return nil, nil
	}
	if len(w.GetValues())+len(w.GetNotValues()) == 0 {
		c.add(problemInvalid, path, "%s: set values or notValues", key)
		return nil, nil
	}
	idPair := func(conv func(path string, vs []string) []*rbacv3.Principal) {
		var pos, neg []*rbacv3.Principal
		n := len(c.problems)
		if len(w.GetValues()) > 0 {
			pos = conv(path+".values", w.GetValues())
		}
		if len(w.GetNotValues()) > 0 {
			neg = conv(path+".notValues", w.GetNotValues())
		}
		if len(c.problems) > n {
			return // a malformed value list: the whole condition is left out
		}
		if pos != nil {
			ids = append(ids, orIDs(pos))
		}
		if neg != nil {
			ids = append(ids, notID(orIDs(neg)))
		}
	}
	permPair := func(conv func(path string, vs []string) []*rbacv3.Permission) {
		var pos, neg []*rbacv3.Permission
		n := len(c.problems)
		if len(w.GetValues()) > 0 {
			pos = conv(path+".values", w.GetValues())
		}
		if len(w.GetNotValues()) > 0 {
			neg = conv(path+".notValues", w.GetNotValues())
		}
		if len(c.problems) > n {
			return
		}
		if pos != nil {
			perms = append(perms, orRules(pos))
		}
		if neg != nil {
			perms = append(perms, notRule(orRules(neg)))
		}
	}
	switch {
	case key == "source.ip":
		idPair(c.directRemoteIPs)
	case key == "remote.ip":
		idPair(c.remoteIPs)
	case key == "source.namespace":
		idPair(c.namespaces)
	case key == "source.principal":
		idPair(c.principals)
	case key == "source.serviceAccount":
		idPair(c.serviceAccounts)
	case key == "source.trustDomain":
		idPair(c.trustDomains)
	case mapKey(key, "request.headers"):
		name := key[len("request.headers[") : len(key)-1]
		if !headerName.MatchString(name) {
			c.add(problemInvalid, path+".key", "%q is not an HTTP header name; write e.g. request.headers[x-user]", name)
			return nil, nil
		}
		idPair(func(path string, vs []string) []*rbacv3.Principal {
			return c.headerValues(path, strings.ToLower(name), vs)
		})
	case key == "destination.ip":
		permPair(c.destinationIPs)
	case key == "destination.port":
		permPair(c.ports)
	case key == "request.auth.principal", key == "request.auth.audiences", key == "request.auth.presenter",
		mapKey(key, "request.auth.claims"):
		c.add(problemUnsupported, path+" "+key, "JWT authentication is not supported by the waypoint")
	case key == "connection.sni":
		c.add(problemUnsupported, path+" "+key, "at a waypoint the server name is that of the HBONE tunnel; match hosts instead")
	case strings.HasPrefix(key, "experimental.envoy.filters."):
		c.add(problemUnsupported, path+" "+key, "Envoy filter metadata is not available in the waypoint")
	case key == "destination.namespace":
		c.add(problemInvalid, path+".key", "%s is replaced by the policy's own namespace; move the policy to that namespace", key)
	case strings.HasPrefix(key, "destination.labels"):
		c.add(problemInvalid, path+".key", "%s is replaced by targetRefs; target the Service", key)
	default:
		c.add(problemInvalid, path+".key", "unknown attribute %q; see https://istio.io/latest/docs/reference/config/security/conditions/", key)
	}
	return ids, perms
}

// mapKey reports whether key is prefix followed by a bracketed name, e.g. request.headers[x].
func mapKey(key, prefix string) bool {
	rest, ok := strings.CutPrefix(key, prefix)
	return ok && len(rest) > 2 && rest[0] == '[' && rest[len(rest)-1] == ']'
}

// headerName is an HTTP field name (RFC 9110 token), or an HTTP/2 pseudo-header.
var headerName = regexp.MustCompile(`^:?[0-9A-Za-z!#$%&'*+.^_|~-]+$`)

// istioForm is one of Istio's string forms: "*" presence, "a*" prefix, "*a" suffix, exact.
type istioForm int

const (
	formExact istioForm = iota
	formPrefix
	formSuffix
	formPresence
)

func parseForm(v string) (istioForm, string) {
	switch {
	case v == "*":
		return formPresence, ""
	case strings.HasPrefix(v, "*"):
		return formSuffix, v[1:]
	case strings.HasSuffix(v, "*"):
		return formPrefix, v[:len(v)-1]
	}
	return formExact, v
}

// each converts every value of vs with conv; nil (after reporting) when one is malformed, so
// that the whole field is left out.
func each[T any](c *ruleCtx, path string, vs []string, conv func(v string) (T, string)) []T {
	out := make([]T, 0, len(vs))
	for i, v := range vs {
		if v == "" {
			c.add(problemInvalid, fmt.Sprintf("%s[%d]", path, i), "empty value; write a value, or \"*\" for any")
			return nil
		}
		x, fix := conv(v)
		if fix != "" {
			c.add(problemInvalid, fmt.Sprintf("%s[%d]", path, i), "%q: %s", v, fix)
			return nil
		}
		out = append(out, x)
	}
	return out
}

func regex(re string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}

func authenticated(m *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
}

// segment is the regex of one SPIFFE path segment in an Istio string form.
func segment(v string) string {
	form, s := parseForm(v)
	switch form {
	case formPresence:
		return `[^/]+`
	case formPrefix:
		return regexp.QuoteMeta(s) + `[^/]*`
	case formSuffix:
		return `[^/]*` + regexp.QuoteMeta(s)
	}
	return regexp.QuoteMeta(s)
}

// principals: Istio's principal strings omit "spiffe://".
func (c *ruleCtx) principals(path string, vs []string) []*rbacv3.Principal {
	return each(c, path, vs, func(v string) (*rbacv3.Principal, string) {
		if rest, ok := strings.CutPrefix(v, "spiffe://"); ok {
			return nil, fmt.Sprintf("principals are written without spiffe://, e.g. %q", rest)
		}
		form, s := parseForm(v)
		switch form {
		case formPresence:
			return authenticated(regex(`.+`)), ""
		case formPrefix:
			return authenticated(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://" + s}}), ""
		case formSuffix:
			return authenticated(regex(`spiffe://.*` + regexp.QuoteMeta(s))), ""
		}
		return authenticated(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "spiffe://" + s}}), ""
	})
}

// namespaces match the namespace segment of the SPIFFE identity.
func (c *ruleCtx) namespaces(path string, vs []string) []*rbacv3.Principal {
	return each(c, path, vs, func(v string) (*rbacv3.Principal, string) {
		if strings.Contains(v, "/") {
			return nil, "a namespace contains no \"/\"; write e.g. \"shop\" or \"shop-*\""
		}
		return authenticated(regex(`spiffe://[^/]+/ns/` + segment(v) + `/sa/[^/]+`)), ""
	})
}

// trustDomains match the trust domain of the SPIFFE identity.
func (c *ruleCtx) trustDomains(path string, vs []string) []*rbacv3.Principal {
	return each(c, path, vs, func(v string) (*rbacv3.Principal, string) {
		if strings.Contains(v, "/") {
			return nil, "a trust domain contains no \"/\"; write e.g. \"cluster.local\""
		}
		if form, s := parseForm(v); form == formExact {
			return authenticated(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://" + s + "/"}}), ""
		}
		return authenticated(regex(`spiffe://` + segment(v) + `/.*`)), ""
	})
}

// serviceAccounts: "<ns>/<sa>" or "<sa>" (in the policy's namespace), exact.
func (c *ruleCtx) serviceAccounts(path string, vs []string) []*rbacv3.Principal {
	if len(vs) > 16 {
		c.add(problemInvalid, path, "at most 16 service accounts; split the source")
		return nil
	}
	return each(c, path, vs, func(v string) (*rbacv3.Principal, string) {
		ns, sa, ok := translate.ParseServiceAccount(v, c.namespace)
		if !ok {
			return nil, translate.ServiceAccountFix
		}
		return authenticated(regex(`spiffe://[^/]+/ns/` + regexp.QuoteMeta(ns) + `/sa/` + regexp.QuoteMeta(sa))), ""
	})
}

func cidr(v string) (*corev3.CidrRange, string) {
	p, ok := translate.ParseCIDR(v)
	if !ok {
		return nil, translate.CIDRFix
	}
	return &corev3.CidrRange{AddressPrefix: p.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(p.Bits()))}, ""
}

func (c *ruleCtx) directRemoteIPs(path string, vs []string) []*rbacv3.Principal {
	return each(c, path, vs, func(v string) (*rbacv3.Principal, string) {
		r, fix := cidr(v)
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: r}}, fix
	})
}

func (c *ruleCtx) remoteIPs(path string, vs []string) []*rbacv3.Principal {
	return each(c, path, vs, func(v string) (*rbacv3.Principal, string) {
		r, fix := cidr(v)
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: r}}, fix
	})
}

func (c *ruleCtx) destinationIPs(path string, vs []string) []*rbacv3.Permission {
	return each(c, path, vs, func(v string) (*rbacv3.Permission, string) {
		r, fix := cidr(v)
		return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationIp{DestinationIp: r}}, fix
	})
}

func (c *ruleCtx) ports(path string, vs []string) []*rbacv3.Permission {
	return each(c, path, vs, func(v string) (*rbacv3.Permission, string) {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return nil, "not a port number (0-65535); write it as a number in quotes, e.g. \"8080\""
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: uint32(n)}}, ""
	})
}

// headerMatcher matches header name with an Istio string form.
func headerMatcher(name, v string, ignoreCase bool) *routev3.HeaderMatcher {
	form, s := parseForm(v)
	h := &routev3.HeaderMatcher{Name: name}
	var m *matcherv3.StringMatcher
	switch form {
	case formPresence:
		h.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
		return h
	case formPrefix:
		m = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}}
	case formSuffix:
		m = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: s}}
	default:
		m = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
	}
	m.IgnoreCase = ignoreCase
	h.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: m}
	return h
}

// hosts match :authority, case-insensitively (the port is stripped by the consumer).
func (c *ruleCtx) hosts(path string, vs []string) []*rbacv3.Permission {
	return each(c, path, vs, func(v string) (*rbacv3.Permission, string) {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: headerMatcher(":authority", v, true)}}, ""
	})
}

// methods match :method, case-sensitively as Istio does.
func (c *ruleCtx) methods(path string, vs []string) []*rbacv3.Permission {
	return each(c, path, vs, func(v string) (*rbacv3.Permission, string) {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: headerMatcher(":method", v, false)}}, ""
	})
}

// paths match the path without its query string.
func (c *ruleCtx) paths(path string, vs []string) []*rbacv3.Permission {
	for i, v := range vs {
		if strings.ContainsAny(v, "{}") {
			c.add(problemUnsupported, fmt.Sprintf("%s[%d]", path, i), "path templates are not supported by the waypoint; write \"/prefix/*\" or \"*/suffix\"")
			return nil
		}
	}
	return each(c, path, vs, func(v string) (*rbacv3.Permission, string) {
		form, s := parseForm(v)
		var m *matcherv3.StringMatcher
		switch form {
		case formPresence:
			m = regex(`.+`)
		case formPrefix:
			m = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}}
		case formSuffix:
			m = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: s}}
		default:
			m = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: m}}}}, ""
	})
}

// headerValues match one value of a header that may be repeated: Envoy joins repeated
// headers with ",", so the value is matched as one element of that list, as Istio does.
func (c *ruleCtx) headerValues(path, name string, vs []string) []*rbacv3.Principal {
	return each(c, path, vs, func(v string) (*rbacv3.Principal, string) {
		h := &routev3.HeaderMatcher{Name: name}
		form, s := parseForm(v)
		var elem string
		switch form {
		case formPresence:
			h.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
			return &rbacv3.Principal{Identifier: &rbacv3.Principal_Header{Header: h}}, ""
		case formPrefix:
			elem = regexp.QuoteMeta(s) + `[^,]*`
		case formSuffix:
			elem = `[^,]*` + regexp.QuoteMeta(s)
		default:
			elem = regexp.QuoteMeta(s)
		}
		h.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: regex(`(.*,)?` + elem + `(,.*)?`)}
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Header{Header: h}}, ""
	})
}

func anyPrincipal() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
}

func anyPermission() *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
}

func isAnyID(p *rbacv3.Principal) bool    { return p.GetAny() }
func isAnyRule(p *rbacv3.Permission) bool { return p.GetAny() }

// andIDs is the AND of ids: any when empty, the single one, else and_ids (any dropped).
func andIDs(ids []*rbacv3.Principal) *rbacv3.Principal {
	var keep []*rbacv3.Principal
	for _, p := range ids {
		if !isAnyID(p) {
			keep = append(keep, p)
		}
	}
	switch len(keep) {
	case 0:
		return anyPrincipal()
	case 1:
		return keep[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: keep}}}
}

// orIDs is the OR of ids (non-empty): any when one is any.
func orIDs(ids []*rbacv3.Principal) *rbacv3.Principal {
	if len(ids) == 1 {
		return ids[0]
	}
	for _, p := range ids {
		if isAnyID(p) {
			return anyPrincipal()
		}
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ids}}}
}

func notID(p *rbacv3.Principal) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: p}}
}

func andRules(rs []*rbacv3.Permission) *rbacv3.Permission {
	var keep []*rbacv3.Permission
	for _, p := range rs {
		if !isAnyRule(p) {
			keep = append(keep, p)
		}
	}
	switch len(keep) {
	case 0:
		return anyPermission()
	case 1:
		return keep[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: keep}}}
}

func orRules(rs []*rbacv3.Permission) *rbacv3.Permission {
	if len(rs) == 1 {
		return rs[0]
	}
	for _, p := range rs {
		if isAnyRule(p) {
			return anyPermission()
		}
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: rs}}}
}

func notRule(p *rbacv3.Permission) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: p}}
}

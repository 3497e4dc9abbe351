package rbac

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

const sleep = "spiffe://cluster.local/ns/foo/sa/sleep"

// filterJSON parses an RBAC filter config written as protojson.
func filterJSON(t testing.TB, s string) *rbachttpv3.RBAC {
	t.Helper()
	cfg := &rbachttpv3.RBAC{}
	if err := protojson.Unmarshal([]byte(s), cfg); err != nil {
		t.Fatalf("bad test config %s: %v", s, err)
	}
	return cfg
}

func mustCompile(t testing.TB, s string) *Filter {
	t.Helper()
	f, err := Compile(filterJSON(t, s))
	if err != nil {
		t.Fatalf("Compile(%s): %v", s, err)
	}
	return f
}

// req is a GET / from sleep at 10.0.0.1 to 10.96.0.10:80, host httpbin, with mods applied.
func req(mods ...func(*Request)) *Request {
	r := &Request{
		Principal:       sleep,
		SourceIP:        netip.MustParseAddr("10.0.0.1"),
		DestinationIP:   netip.MustParseAddr("10.96.0.10"),
		DestinationPort: 80,
		Method:          "GET",
		Host:            "httpbin",
		Path:            "/",
		Header:          http.Header{},
	}
	for _, m := range mods {
		m(r)
	}
	return r
}

func method(m string) func(*Request)    { return func(r *Request) { r.Method = m } }
func path(p string) func(*Request)      { return func(r *Request) { r.Path = p } }
func principal(p string) func(*Request) { return func(r *Request) { r.Principal = p } }
func header(k string, vs ...string) func(*Request) {
	return func(r *Request) { r.Header[http.CanonicalHeaderKey(k)] = vs }
}

const (
	// getPolicy matches GET; postPolicy matches POST; both from any principal.
	getPolicy  = `{"permissions":[{"header":{"name":":method","stringMatch":{"exact":"GET"}}}],"principals":[{"any":true}]}`
	postPolicy = `{"permissions":[{"header":{"name":":method","stringMatch":{"exact":"POST"}}}],"principals":[{"any":true}]}`
)

func TestActions(t *testing.T) {
	cases := []struct {
		name string
		cfg  string
		r    *Request
		want Decision
	}{
		{"no rules allows", `{}`, req(), Decision{Allowed: true}},
		{"ALLOW match", `{"rules":{"action":"ALLOW","policies":{"get":` + getPolicy + `}}}`, req(),
			Decision{Allowed: true, Policy: "get"}},
		{"ALLOW no match denies", `{"rules":{"policies":{"get":` + getPolicy + `}}}`, req(method("POST")),
			Decision{}},
		{"ALLOW without policies denies", `{"rules":{"action":"ALLOW"}}`, req(), Decision{}},
		{"DENY match denies", `{"rules":{"action":"DENY","policies":{"post":` + postPolicy + `}}}`, req(method("POST")),
			Decision{Policy: "post"}},
		{"DENY no match allows", `{"rules":{"action":"DENY","policies":{"post":` + postPolicy + `}}}`, req(),
			Decision{Allowed: true}},
		{"DENY without policies allows", `{"rules":{"action":"DENY"}}`, req(), Decision{Allowed: true}},
		{"LOG match logs, allows", `{"rules":{"action":"LOG","policies":{"post":` + postPolicy + `}}}`, req(method("POST")),
			Decision{Allowed: true, Logged: true, Policy: "post"}},
		{"LOG no match", `{"rules":{"action":"LOG","policies":{"post":` + postPolicy + `}}}`, req(),
			Decision{Allowed: true}},
		{"first policy by name is effective", `{"rules":{"action":"DENY","policies":{"b":` + getPolicy + `,"a":` + getPolicy + `,"c":` + getPolicy + `}}}`,
			req(), Decision{Policy: "a"}},
		{"shadow DENY reported, not enforced", `{"shadowRules":{"action":"DENY","policies":{"post":` + postPolicy + `}}}`, req(method("POST")),
			Decision{Allowed: true, Shadow: ShadowResult{Evaluated: true, Allowed: false, Policy: "post"}}},
		{"shadow ALLOW no match", `{"shadowRules":{"policies":{"get":` + getPolicy + `}}}`, req(method("POST")),
			Decision{Allowed: true, Shadow: ShadowResult{Evaluated: true}}},
		{"shadow LOG allows, not logged", `{"shadowRules":{"action":"LOG","policies":{"get":` + getPolicy + `}}}`, req(),
			Decision{Allowed: true, Shadow: ShadowResult{Evaluated: true, Allowed: true, Policy: "get"}}},
		{"rules and shadow", `{"rules":{"action":"DENY","policies":{"post":` + postPolicy + `}},"shadowRules":{"policies":{"get":` + getPolicy + `}}}`,
			req(method("POST")), Decision{Policy: "post", Shadow: ShadowResult{Evaluated: true}}},
		{"stat prefixes accepted", `{"rulesStatPrefix":"r_","shadowRulesStatPrefix":"s_","trackPerRuleStats":true,"rules":{"policies":{"get":` + getPolicy + `}}}`,
			req(), Decision{Allowed: true, Policy: "get"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := mustCompile(t, c.cfg).Evaluate(c.r); got != c.want {
				t.Errorf("Evaluate = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestEnforcing(t *testing.T) {
	if mustCompile(t, `{"shadowRules":{}}`).Enforcing() {
		t.Error("shadow rules only: Enforcing() = true")
	}
	if !mustCompile(t, `{"rules":{}}`).Enforcing() {
		t.Error("with rules: Enforcing() = false")
	}
	var nilFilter *Filter
	if d := nilFilter.Evaluate(req()); !d.Allowed {
		t.Error("nil filter denies")
	}
}

func TestCompilePerRoute(t *testing.T) {
	cases := []struct {
		name    string
		cfg     string
		r       *Request
		allowed bool
		shadow  bool
	}{
		{"no rbac disables the filter", `{}`, req(method("POST")), true, false},
		{"override enforces", `{"rbac":{"rules":{"policies":{"get":` + getPolicy + `}}}}`, req(method("POST")), false, false},
		{"override with shadow", `{"rbac":{"shadowRules":{"policies":{"get":` + getPolicy + `}}}}`, req(method("POST")), true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := &rbachttpv3.RBACPerRoute{}
			if err := protojson.Unmarshal([]byte(c.cfg), cfg); err != nil {
				t.Fatal(err)
			}
			f, err := CompilePerRoute(cfg)
			if err != nil {
				t.Fatal(err)
			}
			d := f.Evaluate(c.r)
			if d.Allowed != c.allowed || d.Shadow.Evaluated != c.shadow {
				t.Errorf("Evaluate = %+v, want allowed %v, shadow evaluated %v", d, c.allowed, c.shadow)
			}
		})
	}
	t.Run("errors carry the rbac prefix", func(t *testing.T) {
		cfg := &rbachttpv3.RBACPerRoute{}
		if err := protojson.Unmarshal([]byte(`{"rbac":{"rules":{"policies":{"p":{"permissions":[{"metadata":{"filter":"f","path":[{"key":"k"}],"value":{"presentMatch":true}}}],"principals":[{"any":true}]}}}}}`), cfg); err != nil {
			t.Fatal(err)
		}
		_, err := CompilePerRoute(cfg)
		if err == nil || !strings.Contains(err.Error(), `rbac.rules.policies["p"].permissions[0].metadata`) {
			t.Errorf("error = %v, want it to name rbac.rules.policies[\"p\"].permissions[0].metadata", err)
		}
	})
	if _, err := CompilePerRoute(nil); err == nil {
		t.Error("CompilePerRoute(nil): no error")
	}
	if _, err := Compile(nil); err == nil {
		t.Error("Compile(nil): no error")
	}
}

// permissionFilter is an ALLOW filter with one policy: permission p, any principal.
func permissionFilter(p string) string {
	return `{"rules":{"policies":{"p":{"permissions":[` + p + `],"principals":[{"any":true}]}}}}`
}

// principalFilter is an ALLOW filter with one policy: any permission, principal p.
func principalFilter(p string) string {
	return `{"rules":{"policies":{"p":{"permissions":[{"any":true}],"principals":[` + p + `]}}}}`
}

func TestPermissions(t *testing.T) {
	cases := []struct {
		name string
		perm string
		r    *Request
		want bool
	}{
		{"any", `{"any":true}`, req(), true},
		{"url_path exact", `{"urlPath":{"path":{"exact":"/api"}}}`, req(path("/api")), true},
		{"url_path ignores the query", `{"urlPath":{"path":{"exact":"/api"}}}`, req(path("/api?x=1")), true},
		{"url_path ignores the fragment", `{"urlPath":{"path":{"exact":"/api"}}}`, req(path("/api#top")), true},
		{"url_path other", `{"urlPath":{"path":{"exact":"/api"}}}`, req(path("/api/x")), false},
		{"url_path prefix", `{"urlPath":{"path":{"prefix":"/admin/"}}}`, req(path("/admin/users?x")), true},
		{"url_path missing path", `{"urlPath":{"path":{"prefix":"/"}}}`, req(path("")), false},
		{"url_path ignore_case", `{"urlPath":{"path":{"exact":"/API","ignoreCase":true}}}`, req(path("/api")), true},
		{"destination_ip in", `{"destinationIp":{"addressPrefix":"10.96.0.0","prefixLen":12}}`, req(), true},
		{"destination_ip out", `{"destinationIp":{"addressPrefix":"10.0.0.0","prefixLen":16}}`, req(), false},
		{"destination_ip unmasked prefix", `{"destinationIp":{"addressPrefix":"10.96.7.7","prefixLen":16}}`, req(), true},
		{"destination_ip no prefix_len: whole family", `{"destinationIp":{"addressPrefix":"1.2.3.4"}}`, req(), true},
		{"destination_ip /33 is /32", `{"destinationIp":{"addressPrefix":"10.96.0.10","prefixLen":33}}`, req(), true},
		{"destination_ip v6 range, v4 address", `{"destinationIp":{"addressPrefix":"::","prefixLen":0}}`, req(), false},
		{"destination_ip v4-mapped address", `{"destinationIp":{"addressPrefix":"10.96.0.10","prefixLen":32}}`,
			req(func(r *Request) { r.DestinationIP = netip.MustParseAddr("::ffff:10.96.0.10") }), true},
		{"destination_ip no address", `{"destinationIp":{"addressPrefix":"0.0.0.0","prefixLen":0}}`,
			req(func(r *Request) { r.DestinationIP = netip.Addr{} }), false},
		{"destination_port", `{"destinationPort":80}`, req(), true},
		{"destination_port other", `{"destinationPort":8080}`, req(), false},
		{"destination_port_range in", `{"destinationPortRange":{"start":80,"end":81}}`, req(), true},
		{"destination_port_range end exclusive", `{"destinationPortRange":{"start":70,"end":80}}`, req(), false},
		{"and_rules all", `{"andRules":{"rules":[{"destinationPort":80},{"header":{"name":":method","stringMatch":{"exact":"GET"}}}]}}`, req(), true},
		{"and_rules one fails", `{"andRules":{"rules":[{"destinationPort":80},{"header":{"name":":method","stringMatch":{"exact":"PUT"}}}]}}`, req(), false},
		{"or_rules one", `{"orRules":{"rules":[{"destinationPort":81},{"header":{"name":":method","stringMatch":{"exact":"GET"}}}]}}`, req(), true},
		{"or_rules none", `{"orRules":{"rules":[{"destinationPort":81},{"destinationPort":82}]}}`, req(), false},
		{"not_rule", `{"notRule":{"destinationPort":81}}`, req(), true},
		{"not_rule of a match", `{"notRule":{"any":true}}`, req(), false},
		{"requested_server_name empty exact", `{"requestedServerName":{"exact":""}}`, req(), true},
		{"requested_server_name regex .*", `{"requestedServerName":{"safeRegex":{"regex":".*"}}}`, req(), true},
		{"requested_server_name a name", `{"requestedServerName":{"exact":"httpbin.example.com"}}`, req(), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := mustCompile(t, permissionFilter(c.perm)).Evaluate(c.r).Allowed; got != c.want {
				t.Errorf("matched = %v, want %v", got, c.want)
			}
		})
	}
}

func TestPrincipals(t *testing.T) {
	src := func(a string) func(*Request) {
		return func(r *Request) { r.SourceIP = netip.MustParseAddr(a) }
	}
	cases := []struct {
		name string
		id   string
		r    *Request
		want bool
	}{
		{"any", `{"any":true}`, req(principal("")), true},
		{"authenticated exact", `{"authenticated":{"principalName":{"exact":"` + sleep + `"}}}`, req(), true},
		{"authenticated other", `{"authenticated":{"principalName":{"exact":"spiffe://cluster.local/ns/foo/sa/other"}}}`, req(), false},
		{"authenticated regex full match", `{"authenticated":{"principalName":{"safeRegex":{"regex":"spiffe://[^/]+/ns/foo/sa/[^/]+"}}}}`, req(), true},
		{"authenticated regex is anchored", `{"authenticated":{"principalName":{"safeRegex":{"regex":"ns/foo"}}}}`, req(), false},
		{"authenticated regex lookalike", `{"authenticated":{"principalName":{"safeRegex":{"regex":"spiffe://[^/]+/ns/foo/sa/[^/]+"}}}}`,
			req(principal("spiffe://cluster.local/ns/foo/sa/x/y")), false},
		{"authenticated without name", `{"authenticated":{}}`, req(), true},
		{"unauthenticated never matches", `{"authenticated":{}}`, req(principal("")), false},
		{"unauthenticated never matches regex .*", `{"authenticated":{"principalName":{"safeRegex":{"regex":".*"}}}}`, req(principal("")), false},
		{"not authenticated matches plaintext", `{"notId":{"authenticated":{}}}`, req(principal("")), true},
		{"direct_remote_ip", `{"directRemoteIp":{"addressPrefix":"10.0.0.0","prefixLen":8}}`, req(), true},
		{"remote_ip", `{"remoteIp":{"addressPrefix":"10.0.0.1","prefixLen":32}}`, req(), true},
		{"source_ip", `{"sourceIp":{"addressPrefix":"10.0.0.2","prefixLen":32}}`, req(), false},
		{"remote_ip v6", `{"remoteIp":{"addressPrefix":"2001:db8::","prefixLen":32}}`, req(src("2001:db8::1")), true},
		{"remote_ip v6 out", `{"remoteIp":{"addressPrefix":"2001:db8::","prefixLen":32}}`, req(src("2001:db9::1")), false},
		{"direct_remote_ip v4-mapped client", `{"directRemoteIp":{"addressPrefix":"10.0.0.0","prefixLen":8}}`, req(src("::ffff:10.1.2.3")), true},
		{"header", `{"header":{"name":"x-user","stringMatch":{"exact":"alice"}}}`, req(header("x-user", "alice")), true},
		{"url_path", `{"urlPath":{"path":{"suffix":".js"}}}`, req(path("/a/b.js?v=2")), true},
		{"and_ids", `{"andIds":{"ids":[{"authenticated":{}},{"directRemoteIp":{"addressPrefix":"10.0.0.0","prefixLen":8}}]}}`, req(), true},
		{"and_ids one fails", `{"andIds":{"ids":[{"authenticated":{}},{"directRemoteIp":{"addressPrefix":"11.0.0.0","prefixLen":8}}]}}`, req(), false},
		{"or_ids", `{"orIds":{"ids":[{"authenticated":{"principalName":{"prefix":"spiffe://other/"}}},{"remoteIp":{"addressPrefix":"10.0.0.0","prefixLen":24}}]}}`, req(), true},
		{"not_id", `{"notId":{"authenticated":{"principalName":{"exact":"` + sleep + `"}}}}`, req(), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := mustCompile(t, principalFilter(c.id)).Evaluate(c.r).Allowed; got != c.want {
				t.Errorf("matched = %v, want %v", got, c.want)
			}
		})
	}
}

func TestHeaderMatcher(t *testing.T) {
	cases := []struct {
		name string
		hm   string // the HeaderMatcher
		r    *Request
		want bool
	}{
		{"exact", `{"name":"x-user","stringMatch":{"exact":"alice"}}`, req(header("x-user", "alice")), true},
		{"exact case-sensitive", `{"name":"x-user","stringMatch":{"exact":"alice"}}`, req(header("x-user", "Alice")), false},
		{"exact ignore_case", `{"name":"x-user","stringMatch":{"exact":"alice","ignoreCase":true}}`, req(header("x-user", "ALICE")), true},
		{"ignore_case is ASCII only", `{"name":"x-user","stringMatch":{"exact":"k","ignoreCase":true}}`, req(header("x-user", "\u212a")), false},
		{"name is case-insensitive", `{"name":"X-User","stringMatch":{"exact":"alice"}}`, req(header("x-user", "alice")), true},
		{"prefix", `{"name":"x-user","stringMatch":{"prefix":"al"}}`, req(header("x-user", "alice")), true},
		{"prefix ignore_case", `{"name":"x-user","stringMatch":{"prefix":"AL","ignoreCase":true}}`, req(header("x-user", "alice")), true},
		{"suffix", `{"name":"x-user","stringMatch":{"suffix":"ce"}}`, req(header("x-user", "alice")), true},
		{"suffix ignore_case", `{"name":"x-user","stringMatch":{"suffix":"CE","ignoreCase":true}}`, req(header("x-user", "alice")), true},
		{"suffix longer than value", `{"name":"x-user","stringMatch":{"suffix":"malice"}}`, req(header("x-user", "alice")), false},
		{"contains", `{"name":"x-user","stringMatch":{"contains":"lic"}}`, req(header("x-user", "alice")), true},
		{"contains ignore_case", `{"name":"x-user","stringMatch":{"contains":"LIC","ignoreCase":true}}`, req(header("x-user", "alice")), true},
		{"contains no", `{"name":"x-user","stringMatch":{"contains":"bob"}}`, req(header("x-user", "alice")), false},
		{"safe_regex full match", `{"name":"x-user","stringMatch":{"safeRegex":{"regex":"a.*e"}}}`, req(header("x-user", "alice")), true},
		{"safe_regex not a substring match", `{"name":"x-user","stringMatch":{"safeRegex":{"regex":"lic"}}}`, req(header("x-user", "alice")), false},
		{"safe_regex alternation anchored as a whole", `{"name":"x-user","stringMatch":{"safeRegex":{"regex":"x|alice"}}}`, req(header("x-user", "alice")), true},
		{"safe_regex ignore_case has no effect", `{"name":"x-user","stringMatch":{"safeRegex":{"regex":"ALICE"},"ignoreCase":true}}`, req(header("x-user", "alice")), false},
		{"repeated joined with comma", `{"name":"x-user","stringMatch":{"exact":"a,b"}}`, req(header("x-user", "a", "b")), true},
		{"repeated element regex", `{"name":"x-user","stringMatch":{"safeRegex":{"regex":"(.*,)?b(,.*)?"}}}`, req(header("x-user", "a", "b", "c")), true},
		{"missing never matches a string", `{"name":"x-user","stringMatch":{"safeRegex":{"regex":".*"}}}`, req(), false},
		{"missing, inverted: still no match", `{"name":"x-user","stringMatch":{"exact":"bob"},"invertMatch":true}`, req(), false},
		{"missing as empty", `{"name":"x-user","stringMatch":{"exact":""},"treatMissingHeaderAsEmpty":true}`, req(), true},
		{"missing as empty, inverted", `{"name":"x-user","stringMatch":{"exact":"bob"},"invertMatch":true,"treatMissingHeaderAsEmpty":true}`, req(), true},
		{"empty key list is missing", `{"name":"x-user","presentMatch":true}`, req(header("x-user")), false},
		{"invert", `{"name":"x-user","stringMatch":{"exact":"bob"},"invertMatch":true}`, req(header("x-user", "alice")), true},
		{"present", `{"name":"x-user","presentMatch":true}`, req(header("x-user", "")), true},
		{"present missing", `{"name":"x-user","presentMatch":true}`, req(), false},
		{"present false: absent", `{"name":"x-user","presentMatch":false}`, req(), true},
		{"present false: present", `{"name":"x-user","presentMatch":false}`, req(header("x-user", "a")), false},
		{"present inverted: absent", `{"name":"x-user","presentMatch":true,"invertMatch":true}`, req(), true},
		{"present inverted: present", `{"name":"x-user","presentMatch":true,"invertMatch":true}`, req(header("x-user", "a")), false},
		{"present false inverted: absent", `{"name":"x-user","presentMatch":false,"invertMatch":true}`, req(), false},
		{"present, missing as empty", `{"name":"x-user","presentMatch":true,"treatMissingHeaderAsEmpty":true}`, req(), true},
		{"no specifier is presence", `{"name":"x-user"}`, req(header("x-user", "a")), true},
		{"no specifier, missing", `{"name":"x-user"}`, req(), false},
		{"range in", `{"name":"x-n","rangeMatch":{"start":10,"end":20}}`, req(header("x-n", "10")), true},
		{"range end exclusive", `{"name":"x-n","rangeMatch":{"start":10,"end":20}}`, req(header("x-n", "20")), false},
		{"range negative", `{"name":"x-n","rangeMatch":{"start":-10,"end":0}}`, req(header("x-n", "-1")), true},
		{"range spaces and sign", `{"name":"x-n","rangeMatch":{"start":10,"end":20}}`, req(header("x-n", " +15 ")), true},
		{"range not a number", `{"name":"x-n","rangeMatch":{"start":0,"end":20}}`, req(header("x-n", "1x")), false},
		{"range overflow", `{"name":"x-n","rangeMatch":{"start":0,"end":20}}`, req(header("x-n", "99999999999999999999")), false},
		{"range inverted, missing as empty", `{"name":"x-n","rangeMatch":{"start":0,"end":10},"invertMatch":true,"treatMissingHeaderAsEmpty":true}`, req(), true},
		{"deprecated exact_match", `{"name":"x-user","exactMatch":"alice"}`, req(header("x-user", "alice")), true},
		{"deprecated exact_match empty: any value", `{"name":"x-user","exactMatch":""}`, req(header("x-user", "whatever")), true},
		{"deprecated prefix_match", `{"name":"x-user","prefixMatch":"al"}`, req(header("x-user", "alice")), true},
		{"deprecated suffix_match", `{"name":"x-user","suffixMatch":"ce"}`, req(header("x-user", "alice")), true},
		{"deprecated contains_match", `{"name":"x-user","containsMatch":"li"}`, req(header("x-user", "alice")), true},
		{"deprecated safe_regex_match", `{"name":"x-user","safeRegexMatch":{"regex":"al.*"}}`, req(header("x-user", "alice")), true},
		{":method", `{"name":":method","stringMatch":{"exact":"GET"}}`, req(), true},
		{":authority", `{"name":":authority","stringMatch":{"exact":"HTTPBIN","ignoreCase":true}}`, req(), true},
		{"host is :authority", `{"name":"host","stringMatch":{"exact":"httpbin"}}`, req(), true},
		{":authority missing", `{"name":":authority","presentMatch":true}`, req(func(r *Request) { r.Host = "" }), false},
		{":path keeps the query", `{"name":":path","stringMatch":{"exact":"/a?b=c"}}`, req(path("/a?b=c")), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := mustCompile(t, permissionFilter(`{"header":`+c.hm+`}`)).Evaluate(c.r).Allowed; got != c.want {
				t.Errorf("matched = %v, want %v", got, c.want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	policy := func(perm, id string) string {
		return `{"rules":{"policies":{"ns.name":{"permissions":[` + perm + `],"principals":[` + id + `]}}}}`
	}
	anyP := `{"any":true}`
	cases := []struct {
		name string
		cfg  string
		want string // in the error
	}{
		{"matcher", `{"matcher":{}}`, "rbac: matcher:"},
		{"shadow_matcher", `{"shadowMatcher":{}}`, "rbac: shadow_matcher:"},
		{"audit logging", `{"rules":{"auditLoggingOptions":{"auditCondition":"ON_DENY"}}}`, "rules.audit_logging_options"},
		{"shadow audit logging", `{"shadowRules":{"auditLoggingOptions":{}}}`, "shadow_rules.audit_logging_options"},
		{"condition", `{"rules":{"policies":{"p":{"permissions":[{"any":true}],"principals":[{"any":true}],"condition":{"constExpr":{"boolValue":true}}}}}}`, `rules.policies["p"].condition`},
		{"checked condition", `{"rules":{"policies":{"p":{"permissions":[{"any":true}],"principals":[{"any":true}],"checkedCondition":{}}}}}`, `rules.policies["p"].checked_condition`},
		{"permission metadata", policy(`{"metadata":{"filter":"f","path":[{"key":"k"}],"value":{"presentMatch":true}}}`, anyP), `rules.policies["ns.name"].permissions[0].metadata`},
		{"nested permission metadata", policy(`{"andRules":{"rules":[{"any":true},{"notRule":{"metadata":{"filter":"f","path":[{"key":"k"}],"value":{"presentMatch":true}}}}]}}`, anyP),
			`permissions[0].and_rules.rules[1].not_rule.metadata`},
		{"permission matcher", policy(`{"matcher":{"name":"x","typedConfig":{"@type":"type.googleapis.com/google.protobuf.Empty"}}}`, anyP), `permissions[0].matcher`},
		{"permission uri_template", policy(`{"uriTemplate":{"name":"x","typedConfig":{"@type":"type.googleapis.com/google.protobuf.Empty"}}}`, anyP), `permissions[0].uri_template`},
		{"principal metadata", policy(anyP, `{"any":true},{"any":true},{"metadata":{"filter":"f","path":[{"key":"k"}],"value":{"presentMatch":true}}}`), `rules.policies["ns.name"].principals[2].metadata`},
		{"principal filter_state", policy(anyP, `{"filterState":{"key":"k","stringMatch":{"exact":"v"}}}`), `principals[0].filter_state`},
		{"principal custom", policy(anyP, `{"custom":{"name":"x","typedConfig":{"@type":"type.googleapis.com/google.protobuf.Empty"}}}`), `principals[0].custom`},
		{"custom string matcher", policy(anyP, `{"authenticated":{"principalName":{"custom":{"name":"x","typedConfig":{"@type":"type.googleapis.com/google.protobuf.Empty"}}}}}`), `principals[0].authenticated.principal_name.custom`},
		{"bad regex", policy(`{"urlPath":{"path":{"safeRegex":{"regex":"a("}}}}`, anyP), `permissions[0].url_path.path.safe_regex.regex`},
		{"regex valid only when wrapped", policy(`{"urlPath":{"path":{"safeRegex":{"regex":"a)|(b"}}}}`, anyP), `safe_regex.regex`},
		{"bad header regex", policy(`{"header":{"name":"x","safeRegexMatch":{"regex":"[z-a]"}}}`, anyP), `permissions[0].header.safe_regex_match.regex`},
		{"bad cidr", policy(anyP, `{"remoteIp":{"addressPrefix":"not-an-ip","prefixLen":8}}`), `principals[0].remote_ip.address_prefix`},
		{"cidr with zone", policy(anyP, `{"sourceIp":{"addressPrefix":"fe80::1%eth0","prefixLen":64}}`), `principals[0].source_ip.address_prefix`},
		{"port range reversed", policy(`{"destinationPortRange":{"start":90,"end":80}}`, anyP), `permissions[0].destination_port_range`},
		{"port range out of bounds", policy(`{"destinationPortRange":{"start":0,"end":70000}}`, anyP), `destination_port_range.end`},
		{"pseudo-header", policy(`{"header":{"name":":scheme","stringMatch":{"exact":"https"}}}`, anyP), `permissions[0].header.name`},
		{"validation: empty principals", `{"rules":{"policies":{"p":{"permissions":[{"any":true}]}}}}`, "invalid config"},
		{"validation: destination_port", policy(`{"destinationPort":70000}`, anyP), "invalid config"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile(filterJSON(t, c.cfg))
			if err == nil {
				t.Fatalf("Compile: no error, want one containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("Compile error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestCompileRejectsUnknownFields(t *testing.T) {
	cfg := filterJSON(t, principalFilter(`{"authenticated":{"principalName":{"exact":"x"}}}`))
	// Field 99 of the StringMatcher: a field from a newer API this one does not know.
	sm := cfg.Rules.Policies["p"].Principals[0].GetAuthenticated().GetPrincipalName()
	sm.ProtoReflect().SetUnknown([]byte{0x98, 0x06, 0x01}) // field 99, varint 1
	_, err := Compile(cfg)
	if err == nil || !strings.Contains(err.Error(), "unknown fields") || !strings.Contains(err.Error(), "principal_name") {
		t.Errorf("Compile error = %v, want unknown fields in principal_name", err)
	}
}

func TestEvaluateDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates; run without -race to count allocations")
	}
	f := benchFilter(t)
	r := benchRequest()
	if n := testing.AllocsPerRun(100, func() { f.Evaluate(r) }); n != 0 {
		t.Errorf("Evaluate allocates %v times per request, want 0", n)
	}
}

// benchFilter is a realistic ALLOW filter: several policies with principals, namespaces
// (regex), methods, paths and a header condition; the request matches the last one.
func benchFilter(t testing.TB) *Filter {
	return mustCompile(t, `{"rules":{"action":"ALLOW","policies":{
	  "a":{"permissions":[{"header":{"name":":method","stringMatch":{"exact":"POST"}}}],
	       "principals":[{"authenticated":{"principalName":{"exact":"spiffe://cluster.local/ns/foo/sa/admin"}}}]},
	  "b":{"permissions":[{"urlPath":{"path":{"prefix":"/admin/"}}}],
	       "principals":[{"authenticated":{"principalName":{"safeRegex":{"regex":"spiffe://[^/]+/ns/ops/sa/[^/]+"}}}}]},
	  "c":{"permissions":[{"andRules":{"rules":[
	         {"orRules":{"rules":[{"header":{"name":":method","stringMatch":{"exact":"GET"}}},{"header":{"name":":method","stringMatch":{"exact":"HEAD"}}}]}},
	         {"notRule":{"urlPath":{"path":{"prefix":"/private/"}}}},
	         {"destinationPort":80}]}}],
	       "principals":[{"andIds":{"ids":[
	         {"authenticated":{"principalName":{"safeRegex":{"regex":"spiffe://[^/]+/ns/foo/sa/[^/]+"}}}},
	         {"header":{"name":"x-user","stringMatch":{"safeRegex":{"regex":"(.*,)?alice(,.*)?"}}}},
	         {"notId":{"directRemoteIp":{"addressPrefix":"192.168.0.0","prefixLen":16}}}]}}]}
	}}}`)
}

func benchRequest() *Request {
	return req(path("/api/items?page=2"), header("x-user", "alice"), header("user-agent", "curl/8"))
}

func BenchmarkEvaluate(b *testing.B) {
	f := benchFilter(b)
	r := benchRequest()
	if d := f.Evaluate(r); !d.Allowed || d.Policy != "c" {
		b.Fatalf("Evaluate = %+v, want allowed by c", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		f.Evaluate(r)
	}
}

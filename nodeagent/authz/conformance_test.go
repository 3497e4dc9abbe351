package authz_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/weftmesh/weft/nodeagent/authz"
)

// outcome is what a case expects: allowed or not, and by which policy ("" when no policy
// decided: the default allow, or the deny when ALLOW policies apply and none matched).
type outcome struct {
	allowed bool
	policy  string
	audited []string
}

var defaultAllow = outcome{allowed: true}    // no ALLOW policy applies
var noAllowMatched = outcome{allowed: false} // ALLOW policies apply, none matched

func allowedBy(key string) outcome { return outcome{allowed: true, policy: key} }
func deniedBy(key string) outcome  { return outcome{allowed: false, policy: key} }
func (o outcome) auditedBy(keys ...string) outcome {
	o.audited = keys
	return o
}

// conformance is the L4 AuthorizationPolicy conformance suite. Each case is an Istio
// AuthorizationPolicy (written with the helpers in the shape of its YAML, translated as the
// controller does), a connection to a workload of the mesh in helpers_test.go, and the
// outcome Istio documents; reason quotes or paraphrases the documentation it follows:
// istio.io/docs/reference/config/security/authorization-policy (the API reference, "ref"),
// istio.io/docs/ambient/usage/l4-policy ("ambient"), ISTIO-SECURITY-2021-004 (the advisory on
// mTLS-only fields) and istiod's ambient translation (pilot/pkg/serviceregistry/ambient).
var conformance = []struct {
	name     string
	reason   string
	policies []*policy
	conn     authz.Conn
	want     outcome
}{
	// Evaluation order and defaults.
	{
		name:   "no policy",
		reason: `ambient: "When there is no authorization policy provisioned, the default action is ALLOW"`,
		conn:   plainToBooks,
		want:   defaultAllow,
	},
	{
		name:     "DENY that does not match, no ALLOW",
		reason:   `ref: "If there are no ALLOW policies for the workload, allow the request."`,
		policies: ps(deny("bookinfo/deny-dev", rule(from(source(namespaces("dev")))))),
		conn:     gwToBooks,
		want:     defaultAllow,
	},
	{
		name:     "DENY that matches",
		reason:   `ref: "If there are any DENY policies that match the request, deny the request."`,
		policies: ps(deny("bookinfo/deny-dev", rule(from(source(namespaces("dev")))))),
		conn:     toolToBooks,
		want:     deniedBy("bookinfo/deny-dev"),
	},
	{
		name:   "DENY before ALLOW",
		reason: `ref: "the DENY action [is evaluated before] the ALLOW action": a request both match is denied`,
		policies: ps(
			allow("bookinfo/allow-all", rule()),
			deny("bookinfo/deny-dev", rule(from(source(namespaces("dev"))))),
		),
		conn: toolToBooks,
		want: deniedBy("bookinfo/deny-dev"),
	},
	{
		name:     "ALLOW that matches",
		reason:   `ref: "If any of the ALLOW policies match the request, allow the request."`,
		policies: ps(allow("bookinfo/allow-gw", rule(from(source(principals(gw)))))),
		conn:     gwToBooks,
		want:     allowedBy("bookinfo/allow-gw"),
	},
	{
		name:     "ALLOW applies, nothing matches",
		reason:   `ref: step 5 "Deny the request." once ALLOW policies apply and none matches`,
		policies: ps(allow("bookinfo/allow-gw", rule(from(source(principals(gw)))))),
		conn:     toolToBooks,
		want:     noAllowMatched,
	},
	{
		name:   "second ALLOW matches",
		reason: `ref: "If any of the ALLOW policies match the request, allow the request."`,
		policies: ps(
			allow("bookinfo/allow-gw", rule(from(source(principals(gw))))),
			allow("bookinfo/allow-dev", rule(from(source(namespaces("dev"))))),
		),
		conn: toolToBooks,
		want: allowedBy("bookinfo/allow-dev"),
	},
	{
		name:   "DENY does not match, ALLOW matches",
		reason: `ref: DENY policies that do not match leave the decision to the ALLOW policies`,
		policies: ps(
			deny("bookinfo/deny-dev", rule(from(source(namespaces("dev"))))),
			allow("bookinfo/allow-gw", rule(from(source(principals(gw))))),
		),
		conn: gwToBooks,
		want: allowedBy("bookinfo/allow-gw"),
	},
	{
		name:   "DENY and ALLOW both miss",
		reason: `ref: no DENY matches, ALLOW policies exist, none matches: "Deny the request."`,
		policies: ps(
			deny("bookinfo/deny-plain", rule(from(source(notPrincipals("*"))))),
			allow("bookinfo/allow-gw", rule(from(source(principals(gw))))),
		),
		conn: toolToBooks,
		want: noAllowMatched,
	},

	// AUDIT.
	{
		name:     "AUDIT alone never decides",
		reason:   `ref: "AUDIT policies do not affect whether requests are allowed or denied to the workload."`,
		policies: ps(audit("bookinfo/audit-dev", rule(from(source(namespaces("dev")))))),
		conn:     toolToBooks,
		want:     defaultAllow.auditedBy("bookinfo/audit-dev"),
	},
	{
		name:   "AUDIT with a denying ALLOW set",
		reason: `ref: "Requests will be allowed or denied based solely on CUSTOM, DENY and ALLOW actions."`,
		policies: ps(
			audit("bookinfo/audit-dev", rule(from(source(namespaces("dev"))))),
			allow("bookinfo/allow-gw", rule(from(source(principals(gw))))),
		),
		conn: toolToBooks,
		want: noAllowMatched.auditedBy("bookinfo/audit-dev"),
	},
	{
		name:   "AUDIT with a matching DENY",
		reason: `ref: "A request will be internally marked that it should be audited if there is an AUDIT policy on the workload that matches the request."`,
		policies: ps(
			audit("bookinfo/audit-all", rule()),
			deny("bookinfo/deny-dev", rule(from(source(namespaces("dev"))))),
		),
		conn: toolToBooks,
		want: deniedBy("bookinfo/deny-dev").auditedBy("bookinfo/audit-all"),
	},
	{
		name:     "AUDIT that does not match",
		reason:   `ref: only an AUDIT policy "that matches the request" marks it for audit`,
		policies: ps(audit("bookinfo/audit-dev", rule(from(source(namespaces("dev")))))),
		conn:     gwToBooks,
		want:     defaultAllow,
	},
	{
		name:   "AUDIT is not an ALLOW policy",
		reason: `ref: AUDIT does not count among "ALLOW policies for the workload", so the default allow stands`,
		policies: ps(
			audit("bookinfo/audit-gw", rule(from(source(principals(gw))))),
		),
		conn: toolToBooks,
		want: defaultAllow,
	},

	// Empty rules.
	{
		name:     "allow-nothing: spec {}",
		reason:   `ref: a policy without rules "allows nothing and effectively denies all requests"`,
		policies: ps(allow("bookinfo/allow-nothing")),
		conn:     gwToBooks,
		want:     noAllowMatched,
	},
	{
		name:     "DENY without rules matches nothing",
		reason:   `ref: rules "If not set, the match will never occur."`,
		policies: ps(deny("bookinfo/deny-nothing")),
		conn:     plainToBooks,
		want:     defaultAllow,
	},
	{
		name:     "allow-all: rules [{}]",
		reason:   `ref: "An empty rule is always matched."; rules: [{}] "allows all requests"`,
		policies: ps(allow("bookinfo/allow-all", rule())),
		conn:     plainToBooks,
		want:     allowedBy("bookinfo/allow-all"),
	},
	{
		name:     "deny-all: DENY rules [{}]",
		reason:   `ref: "An empty rule is always matched.", so a DENY with rules: [{}] denies everything`,
		policies: ps(deny("bookinfo/deny-all", rule())),
		conn:     gwToBooks,
		want:     deniedBy("bookinfo/deny-all"),
	},
	{
		name:   "allow-nothing beside allow-all",
		reason: `ref: "If any of the ALLOW policies match the request, allow the request."`,
		policies: ps(
			allow("bookinfo/allow-nothing"),
			allow("bookinfo/allow-all", rule()),
		),
		conn: toolToBooks,
		want: allowedBy("bookinfo/allow-all"),
	},
	{
		name:     "AUDIT rules [{}] audits everything",
		reason:   `ref: "An empty rule is always matched." for AUDIT as for the other actions`,
		policies: ps(audit("bookinfo/audit-all", rule())),
		conn:     plainToBooks,
		want:     defaultAllow.auditedBy("bookinfo/audit-all"),
	},

	// Scope: namespace, selector, root namespace.
	{
		name:     "namespace policy applies to every workload of the namespace",
		reason:   `ref: without selector "the policy applies to all workloads in namespace foo"`,
		policies: ps(allow("bookinfo/allow-nothing")),
		conn:     mtls(gw, "10.2.0.7", "10.1.0.11", 9080), // ratings
		want:     noAllowMatched,
	},
	{
		name:     "namespace policy does not apply to another namespace",
		reason:   `ref: "metadata/namespace tells which namespace the policy applies"`,
		policies: ps(allow("bookinfo/allow-nothing")),
		conn:     mtls(tool, "10.3.0.9", "10.2.0.5", 8080), // web in shop
		want:     defaultAllow,
	},
	{
		name:     "root namespace policy applies mesh-wide",
		reason:   `ref: "If set to root namespace, the policy applies to all namespaces in a mesh."`,
		policies: ps(deny("istio-system/deny-dev", rule(from(source(namespaces("dev")))))),
		conn:     mtls(tool, "10.3.0.9", "10.2.0.5", 8080), // web in shop
		want:     deniedBy("istio-system/deny-dev"),
	},
	{
		name:     "selector selects the labelled workload",
		reason:   `ref: "The selector decides where to apply the authorization policy" (matchLabels app: books)`,
		policies: ps(allow("bookinfo/allow-nothing").on("app=books")),
		conn:     gwToBooks,
		want:     noAllowMatched,
	},
	{
		name:     "selector leaves other workloads of the namespace",
		reason:   `ref: "workload selector can be used to further restrict where a policy applies"`,
		policies: ps(allow("bookinfo/allow-nothing").on("app=books")),
		conn:     mtls(gw, "10.2.0.7", "10.1.0.11", 9080), // ratings
		want:     defaultAllow,
	},
	{
		name:     "selector with several labels needs them all",
		reason:   `ref: the selector's matchLabels select workloads carrying every listed label`,
		policies: ps(allow("bookinfo/allow-nothing").on("app=books", "version=v2")),
		conn:     gwToBooks,
		want:     defaultAllow,
	},
	{
		name:     "root namespace selector matches in every namespace",
		reason:   `ref: "If the authorization policy is in the root namespace, the selector will additionally match with workloads in all namespaces."`,
		policies: ps(allow("istio-system/allow-nothing").on("app=web")),
		conn:     mtls(gw, "10.2.0.7", "10.2.0.5", 8080),
		want:     noAllowMatched,
	},
	{
		name:     "selector of another namespace does not match",
		reason:   `ref: "The selector will match with workloads in the same namespace as the authorization policy."`,
		policies: ps(allow("bookinfo/allow-nothing").on("app=web")),
		conn:     mtls(gw, "10.2.0.7", "10.2.0.5", 8080),
		want:     defaultAllow,
	},
	{
		name:   "mesh-wide DENY overrides a namespace ALLOW",
		reason: `ref: DENY policies of every scope are evaluated before the ALLOW policies`,
		policies: ps(
			deny("istio-system/deny-dev", rule(from(source(namespaces("dev"))))),
			allow("bookinfo/allow-all", rule()),
		),
		conn: toolToBooks,
		want: deniedBy("istio-system/deny-dev"),
	},
	{
		name:   "ALLOW policies of every scope are OR-ed",
		reason: `ref: "If any of the ALLOW policies match the request" — mesh-wide, namespace and selector policies alike`,
		policies: ps(
			allow("istio-system/allow-gw", rule(from(source(principals(gw))))),
			allow("bookinfo/allow-dev", rule(from(source(namespaces("dev"))))).on("app=books"),
		),
		conn: toolToBooks,
		want: allowedBy("bookinfo/allow-dev"),
	},

	// principals / notPrincipals.
	{
		name:     "principals exact",
		reason:   `ref: principals "A list of peer identities derived from the peer certificate" in the form <TRUST_DOMAIN>/ns/<NAMESPACE>/sa/<SERVICE_ACCOUNT>`,
		policies: ps(allow("bookinfo/allow-gw", rule(from(source(principals(gw)))))),
		conn:     gwToBooks,
		want:     allowedBy("bookinfo/allow-gw"),
	},
	{
		name:     "principals prefix",
		reason:   `ref: "Prefix match: \"abc*\" will match on value \"abc\" and \"abcd\"."`,
		policies: ps(allow("bookinfo/allow-shop", rule(from(source(principals("cluster.local/ns/shop/*")))))),
		conn:     gwToBooks,
		want:     allowedBy("bookinfo/allow-shop"),
	},
	{
		name:     "principals prefix matches the value itself",
		reason:   `ref: "abc*" matches "abc"`,
		policies: ps(allow("bookinfo/allow-gw", rule(from(source(principals(gw+"*")))))),
		conn:     gwToBooks,
		want:     allowedBy("bookinfo/allow-gw"),
	},
	{
		name:     "principals suffix",
		reason:   `ref: "Suffix match: \"*abc\" will match on value \"abc\" and \"xabc\"."`,
		policies: ps(allow("bookinfo/allow-sa-gw", rule(from(source(principals("*/sa/gw")))))),
		conn:     gwToBooks,
		want:     allowedBy("bookinfo/allow-sa-gw"),
	},
	{
		name:     "principals suffix that does not match",
		reason:   `ref: "*abc" matches values ending in "abc" only`,
		policies: ps(allow("bookinfo/allow-sa-gw", rule(from(source(principals("*/sa/gw")))))),
		conn:     toolToBooks,
		want:     noAllowMatched,
	},
	{
		name:     "principals presence with mTLS",
		reason:   `ref: "Presence match: \"*\" will match when value is not empty."`,
		policies: ps(allow("bookinfo/allow-mtls", rule(from(source(principals("*")))))),
		conn:     toolToBooks,
		want:     allowedBy("bookinfo/allow-mtls"),
	},
	{
		name:     "principals presence with plaintext",
		reason:   `ref: principals "requires mTLS enabled"; a plaintext peer has no principal, so "*" does not match`,
		policies: ps(allow("bookinfo/allow-mtls", rule(from(source(principals("*")))))),
		conn:     plainToBooks,
		want:     noAllowMatched,
	},
	{
		name:     "principals exact with plaintext",
		reason:   `advisory 2021-004: "These mTLS-only fields will never match when the traffic is plain text"`,
		policies: ps(allow("bookinfo/allow-gw", rule(from(source(principals(gw)))))),
		conn:     plain("10.2.0.7", "10.1.0.10", 9080),
		want:     noAllowMatched,
	},
	{
		name:     "principals lists are OR-ed",
		reason:   `ref: the source matches "if the principal is \"admin\" or \"dev\""`,
		policies: ps(allow("bookinfo/allow-two", rule(from(source(principals(gw, tool)))))),
		conn:     toolToBooks,
		want:     allowedBy("bookinfo/allow-two"),
	},
	{
		name:     "principals given with the spiffe:// scheme by the connection",
		reason:   `ref: the peer identity is "<TRUST_DOMAIN>/ns/<NAMESPACE>/sa/<SERVICE_ACCOUNT>", the SPIFFE ID without its scheme`,
		policies: ps(allow("bookinfo/allow-gw", rule(from(source(principals(gw)))))),
		conn:     mtls("spiffe://"+gw, "10.2.0.7", "10.1.0.10", 9080),
		want:     allowedBy("bookinfo/allow-gw"),
	},
	{
		name:     "notPrincipals excludes the listed identity",
		reason:   `ref: not_principals "A list of negative match of peer identities."`,
		policies: ps(allow("bookinfo/allow-not-gw", rule(from(source(notPrincipals(gw)))))),
		conn:     gwToBooks,
		want:     noAllowMatched,
	},
	{
		name:     "notPrincipals admits other identities",
		reason:   `ref: a negative match matches every value it does not list`,
		policies: ps(allow("bookinfo/allow-not-gw", rule(from(source(notPrincipals(gw)))))),
		conn:     toolToBooks,
		want:     allowedBy("bookinfo/allow-not-gw"),
	},
	{
		name:     "notPrincipals matches plaintext",
		reason:   `advisory 2021-004: a not-field "will be compared to an empty value when mTLS is not used", so a plain text request is matched`,
		policies: ps(allow("bookinfo/allow-not-gw", rule(from(source(notPrincipals(gw)))))),
		conn:     plainToBooks,
		want:     allowedBy("bookinfo/allow-not-gw"),
	},
	{
		name:     `DENY notPrincipals ["*"] denies plaintext`,
		reason:   `advisory 2021-004: deny plain text with notPrincipals: ["*"]; ambient's STRICT is this very DENY (istio-ambient.md §1.9)`,
		policies: ps(deny("bookinfo/require-mtls", rule(from(source(notPrincipals("*")))))),
		conn:     plainToBooks,
		want:     deniedBy("bookinfo/require-mtls"),
	},
	{
		name:     `DENY notPrincipals ["*"] lets mTLS through`,
		reason:   `ref: presence "*" matches any non-empty principal, so the negative match fails for mTLS peers`,
		policies: ps(deny("bookinfo/require-mtls", rule(from(source(notPrincipals("*")))))),
		conn:     gwToBooks,
		want:     defaultAllow,
	},

	// namespaces / notNamespaces.
	{
		name:     "namespaces exact",
		reason:   `ref: namespaces "A list of namespaces derived from the peer certificate."`,
		policies: ps(allow("bookinfo/allow-shop", rule(from(source(namespaces("shop")))))),
		conn:     gwToBooks,
		want:     allowedBy("bookinfo/allow-shop"),
	},
	{
		name:     "namespaces of another namespace",
		reason:   `ref: only the listed namespaces match`,
		policies: ps(allow("bookinfo/allow-shop", rule(from(source(namespaces("shop")))))),
		conn:     toolToBooks,
		want:     noAllowMatched,
	},
	{
		name:     "namespaces with plaintext",
		reason:   `ref: namespaces "requires mTLS enabled"; advisory 2021-004: it "will never match when the traffic is plain text"`,
		policies: ps(allow("bookinfo/allow-shop", rule(from(source(namespaces("shop")))))),
		conn:     plain("10.2.0.7", "10.1.0.10", 9080),
		want:     noAllowMatched,
	},
	{
		name:     "namespaces prefix",
		reason:   `ref: "Prefix match: \"abc*\"" applies to every string field`,
		policies: ps(allow("bookinfo/allow-sh", rule(from(source(namespaces("sh*")))))),
		conn:     gwToBooks,
		want:     allowedBy("bookinfo/allow-sh"),
	},
	{
		name:     "namespaces suffix",
		reason:   `ref: "Suffix match: \"*abc\"" applies to every string field`,
		policies: ps(deny("bookinfo/deny-ev", rule(from(source(namespaces("*ev")))))),
		conn:     toolToBooks,
		want:     deniedBy("bookinfo/deny-ev"),
	},
	{
		name:     "namespaces presence with plaintext",
		reason:   `ref: "Presence match: \"*\" will match when value is not empty." — a plaintext peer has no namespace`,
		policies: ps(allow("bookinfo/allow-any-ns", rule(from(source(namespaces("*")))))),
		conn:     plainToBooks,
		want:     noAllowMatched,
	},
	{
		name:     "namespaces presence with mTLS",
		reason:   `ref: "*" matches any namespace of an mTLS peer`,
		policies: ps(allow("bookinfo/allow-any-ns", rule(from(source(namespaces("*")))))),
		conn:     toolToBooks,
		want:     allowedBy("bookinfo/allow-any-ns"),
	},
	{
		name:     "notNamespaces with mTLS",
		reason:   `ref: not_namespaces "A list of negative match of namespaces."`,
		policies: ps(deny("bookinfo/deny-not-shop", rule(from(source(notNamespaces("shop")))))),
		conn:     toolToBooks,
		want:     deniedBy("bookinfo/deny-not-shop"),
	},
	{
		name:     "notNamespaces matches plaintext",
		reason:   `advisory 2021-004: with notNamespaces: ["foo"], "A plain text request from the namespace foo will actually be allowed."`,
		policies: ps(allow("bookinfo/allow-ns-not-foo", rule(from(source(notNamespaces("foo")))))),
		conn:     plainToBooks,
		want:     allowedBy("bookinfo/allow-ns-not-foo"),
	},

	// ipBlocks / notIpBlocks.
	{
		name:     "ipBlocks CIDR",
		reason:   `ref: ip_blocks "populated from the source address of the IP packet"; "CIDR (e.g. \"203.0.113.0/24\")"`,
		policies: ps(allow("bookinfo/allow-net", rule(from(source(ipBlocks("10.2.0.0/16")))))),
		conn:     gwToBooks,
		want:     allowedBy("bookinfo/allow-net"),
	},
	{
		name:     "ipBlocks single IP",
		reason:   `ref: "Single IP (e.g. \"203.0.113.4\") and CIDR (e.g. \"203.0.113.0/24\") are supported."`,
		policies: ps(allow("bookinfo/allow-host", rule(from(source(ipBlocks("10.2.0.7")))))),
		conn:     gwToBooks,
		want:     allowedBy("bookinfo/allow-host"),
	},
	{
		name:     "ipBlocks single IP of another host",
		reason:   `ref: a single IP is that address alone`,
		policies: ps(allow("bookinfo/allow-host", rule(from(source(ipBlocks("10.2.0.8")))))),
		conn:     gwToBooks,
		want:     noAllowMatched,
	},
	{
		name:     "ipBlocks apply to plaintext",
		reason:   `ref: ipBlocks come from the IP packet, not from mTLS, so they match plaintext too`,
		policies: ps(deny("bookinfo/deny-outside", rule(from(source(ipBlocks("10.9.0.0/16")))))),
		conn:     plainToBooks,
		want:     deniedBy("bookinfo/deny-outside"),
	},
	{
		name:     "notIpBlocks excludes the block",
		reason:   `ref: not_ip_blocks "A list of negative match of IP blocks."`,
		policies: ps(allow("bookinfo/allow-not-shop-net", rule(from(source(notIPBlocks("10.2.0.0/16")))))),
		conn:     gwToBooks,
		want:     noAllowMatched,
	},
	{
		name:     "DENY notIpBlocks denies outsiders",
		reason:   `ref: a DENY with notIpBlocks: ["10.0.0.0/8"] matches every source outside the block`,
		policies: ps(deny("bookinfo/deny-outside-10", rule(from(source(notIPBlocks("10.0.0.0/8")))))),
		conn:     plain("192.168.1.1", "10.1.0.10", 9080),
		want:     deniedBy("bookinfo/deny-outside-10"),
	},
	{
		name:     "ipBlocks IPv6 CIDR",
		reason:   `ref: ipBlocks take CIDRs of either family`,
		policies: ps(allow("bookinfo/allow-v6", rule(from(source(ipBlocks("fd00:2::/32")))))),
		conn:     mtls(gw, "fd00:2::7", "fd00:1::10", 9080),
		want:     allowedBy("bookinfo/allow-v6"),
	},
	{
		name:     "ipBlocks IPv6 single IP",
		reason:   `ref: a single IPv6 address is supported as is a single IPv4 one`,
		policies: ps(allow("bookinfo/allow-v6-host", rule(from(source(ipBlocks("fd00:2::7")))))),
		conn:     mtls(gw, "fd00:2::8", "fd00:1::10", 9080),
		want:     noAllowMatched,
	},
	{
		name:     "IPv4 block, IPv4-mapped source",
		reason:   `ref: ipBlocks match the source address; an IPv4-mapped IPv6 address is that IPv4 address`,
		policies: ps(allow("bookinfo/allow-net", rule(from(source(ipBlocks("10.2.0.0/16")))))),
		conn:     mtls(gw, "::ffff:10.2.0.7", "::ffff:10.1.0.10", 9080),
		want:     allowedBy("bookinfo/allow-net"),
	},
	{
		name:     "IPv4-mapped block, IPv4 source",
		reason:   `ref: an IPv4-mapped CIDR denotes the IPv4 addresses it maps`,
		policies: ps(allow("bookinfo/allow-net", rule(from(source(ipBlocks("::ffff:10.2.0.0/112")))))),
		conn:     gwToBooks,
		want:     allowedBy("bookinfo/allow-net"),
	},
	{
		name:     "IPv4 block, IPv6 source",
		reason:   `ref: an IPv4 block does not contain IPv6 sources`,
		policies: ps(allow("bookinfo/allow-net", rule(from(source(ipBlocks("0.0.0.0/0")))))),
		conn:     mtls(gw, "fd00:2::7", "fd00:1::10", 9080),
		want:     noAllowMatched,
	},
	{
		name:     "CIDR with host bits",
		reason:   `ref: a CIDR names its network; host bits of "10.2.0.7/16" are ignored as Envoy's CidrRange does`,
		policies: ps(allow("bookinfo/allow-net", rule(from(source(ipBlocks("10.2.9.9/16")))))),
		conn:     gwToBooks,
		want:     allowedBy("bookinfo/allow-net"),
	},

	// ports / notPorts.
	{
		name:     "ports",
		reason:   `ref: ports "A list of ports as specified in the connection."`,
		policies: ps(allow("bookinfo/allow-9080", rule(to(operation(ports("9080")))))),
		conn:     gwToBooks,
		want:     allowedBy("bookinfo/allow-9080"),
	},
	{
		name:     "ports of another port",
		reason:   `ref: only the listed ports match`,
		policies: ps(allow("bookinfo/allow-9080", rule(to(operation(ports("9080")))))),
		conn:     mtls(gw, "10.2.0.7", "10.1.0.10", 15020),
		want:     noAllowMatched,
	},
	{
		name:     "ports lists are OR-ed",
		reason:   `ref: a positive list matches when one of its values does`,
		policies: ps(allow("bookinfo/allow-web", rule(to(operation(ports("80", "9080")))))),
		conn:     gwToBooks,
		want:     allowedBy("bookinfo/allow-web"),
	},
	{
		name:     "notPorts excludes the port",
		reason:   `ref: not_ports "A list of negative match of ports as specified in the connection."`,
		policies: ps(allow("bookinfo/allow-not-admin", rule(to(operation(notPorts("15000")))))),
		conn:     mtls(gw, "10.2.0.7", "10.1.0.10", 15000),
		want:     noAllowMatched,
	},
	{
		name:     "notPorts admits other ports",
		reason:   `ref: a negative match matches every port it does not list`,
		policies: ps(allow("bookinfo/allow-not-admin", rule(to(operation(notPorts("15000")))))),
		conn:     gwToBooks,
		want:     allowedBy("bookinfo/allow-not-admin"),
	},
	{
		name:     "DENY scoped to a port leaves other ports",
		reason:   `ref: a DENY of ports: ["8080"] denies "all TCP traffic on port 8080"`,
		policies: ps(deny("bookinfo/deny-8080", rule(to(operation(ports("8080")))))),
		conn:     gwToBooks,
		want:     defaultAllow,
	},

	// when: the L4 conditions.
	{
		name:     "when destination.ip",
		reason:   `conditions: destination.ip "Destination workload instance IP address, supports single IP or CIDR"`,
		policies: ps(allow("bookinfo/allow-books-ip", rule(when("destination.ip", "10.1.0.10")))),
		conn:     gwToBooks,
		want:     allowedBy("bookinfo/allow-books-ip"),
	},
	{
		name:     "when destination.ip notValues",
		reason:   `ref: not_values "A list of negative match of values for the attribute."`,
		policies: ps(allow("bookinfo/allow-not-v6", rule(whenNot("destination.ip", "fd00::/16")))),
		conn:     mtls(gw, "fd00:2::7", "fd00:1::10", 9080),
		want:     noAllowMatched,
	},
	{
		name:     "when destination.port",
		reason:   `conditions: destination.port, the destination workload instance's port, is an L4 attribute (HTTP and TCP)`,
		policies: ps(deny("bookinfo/deny-9080", rule(when("destination.port", "9080")))),
		conn:     gwToBooks,
		want:     deniedBy("bookinfo/deny-9080"),
	},
	{
		name:     "when source.ip",
		reason:   `conditions: source.ip "Source workload instance IP address, supports single IP or CIDR"`,
		policies: ps(allow("bookinfo/allow-src", rule(when("source.ip", "10.3.0.0/24")))),
		conn:     toolToBooks,
		want:     allowedBy("bookinfo/allow-src"),
	},
	{
		name:     "when source.namespace with plaintext",
		reason:   `advisory 2021-004: "the source.namespace custom condition" is mTLS-only and never matches plain text`,
		policies: ps(allow("bookinfo/allow-shop", rule(when("source.namespace", "shop")))),
		conn:     plain("10.2.0.7", "10.1.0.10", 9080),
		want:     noAllowMatched,
	},
	{
		name:     "when source.principal notValues",
		reason:   `conditions: source.principal "The identity of the source workload, requires mutual TLS enabled"; notValues negates it`,
		policies: ps(deny("bookinfo/deny-not-gw", rule(whenNot("source.principal", gw)))),
		conn:     toolToBooks,
		want:     deniedBy("bookinfo/deny-not-gw"),
	},
	{
		name:   "all conditions must match",
		reason: `ref: "A match occurs when at least one source, one operation and all conditions matches the request."`,
		policies: ps(allow("bookinfo/allow-shop-8080", rule(
			when("source.namespace", "shop"),
			when("destination.port", "8080"),
		))),
		conn: gwToBooks,
		want: noAllowMatched,
	},

	// Composition of rules, from, to and fields.
	{
		name:   "rules are OR-ed",
		reason: `ref: rules "A match occurs when at least one rule matches the request."`,
		policies: ps(allow("bookinfo/allow-two-rules",
			rule(from(source(principals(tool)))),
			rule(from(source(principals(gw)))),
		)),
		conn: gwToBooks,
		want: allowedBy("bookinfo/allow-two-rules"),
	},
	{
		name:   "from entries are OR-ed",
		reason: `ref: a rule matches when "at least one source" does — principal cluster.local/ns/default/sa/sleep or namespace test`,
		policies: ps(allow("bookinfo/allow-either", rule(from(
			source(principals(tool)),
			source(namespaces("shop")),
		)))),
		conn: gwToBooks,
		want: allowedBy("bookinfo/allow-either"),
	},
	{
		name:   "fields of a source are AND-ed",
		reason: `ref: "Source specifies the source identities of a request. Fields in the source are ANDed together."`,
		policies: ps(allow("bookinfo/allow-gw-from-dev-net", rule(from(
			source(principals(gw), ipBlocks("10.3.0.0/16")),
		)))),
		conn: gwToBooks,
		want: noAllowMatched,
	},
	{
		name:   "from AND to",
		reason: `ref: a rule needs "one source, one operation" to match: gw on 9080 does not match to: ports 8080`,
		policies: ps(allow("bookinfo/allow-gw-8080", rule(
			from(source(principals(gw))),
			to(operation(ports("8080"))),
		))),
		conn: gwToBooks,
		want: noAllowMatched,
	},
	{
		name:   "from AND to, both match",
		reason: `ref: "A match occurs when at least one source, one operation and all conditions matches the request."`,
		policies: ps(allow("bookinfo/allow-gw-9080", rule(
			from(source(principals(gw))),
			to(operation(ports("8080")), operation(ports("9080"))),
		))),
		conn: gwToBooks,
		want: allowedBy("bookinfo/allow-gw-9080"),
	},
	{
		name:   "the reference's Source example",
		reason: `ref: matches "if the principal is admin or dev and the namespace is prod or test and the ip is not 203.0.113.4"`,
		policies: ps(allow("bookinfo/example", rule(from(source(
			principals("cluster.local/ns/prod/sa/admin", "cluster.local/ns/prod/sa/dev"),
			namespaces("prod", "test"),
			notIPBlocks("203.0.113.4"),
		))))),
		conn: mtls("cluster.local/ns/prod/sa/dev", "203.0.113.4", "10.1.0.10", 9080),
		want: noAllowMatched,
	},
	{
		name:   "positive and negative fields together",
		reason: `ref: fields are AND-ed: namespaces: [shop] with notPrincipals: [gw] admits shop's other identities only`,
		policies: ps(allow("bookinfo/allow-shop-but-gw", rule(from(
			source(namespaces("shop"), notPrincipals(gw)),
		)))),
		conn: mtls("cluster.local/ns/shop/sa/cart", "10.2.0.8", "10.1.0.10", 9080),
		want: allowedBy("bookinfo/allow-shop-but-gw"),
	},

	// PeerAuthentication as ambient converts it (istiod's convertPeerAuthentication).
	{
		name:   "STRICT with a PERMISSIVE port: plaintext to that port",
		reason: `istiod: a workload STRICT policy with portLevelMtls PERMISSIVE becomes DENY {notPrincipals ["*"]} AND {notDestinationPorts [port]}`,
		policies: ps(deny("bookinfo/converted_peer_authentication_books", rule(
			from(source(notPrincipals("*"))),
			to(operation(notPorts("9090"))),
		)).on("app=books")),
		conn: plain("10.9.0.1", "10.1.0.10", 9090),
		want: defaultAllow,
	},
	{
		name:   "STRICT with a PERMISSIVE port: plaintext to another port",
		reason: `ref: PeerAuthentication STRICT "Connection is an mTLS tunnel" except on the PERMISSIVE port`,
		policies: ps(deny("bookinfo/converted_peer_authentication_books", rule(
			from(source(notPrincipals("*"))),
			to(operation(notPorts("9090"))),
		)).on("app=books")),
		conn: plainToBooks,
		want: deniedBy("bookinfo/converted_peer_authentication_books"),
	},

	// L7 rules at L4 (the controller's translation, as istiod's).
	{
		name:     "ALLOW rule with L7 fields is dropped",
		reason:   `istiod ambient status: "Within an ALLOW policy, rules matching HTTP attributes are omitted. This will be more restrictive than requested."`,
		policies: ps(allow("bookinfo/allow-get", noRules...)),
		conn:     gwToBooks,
		want:     noAllowMatched,
	},
	{
		name:     "DENY rule with L7 fields keeps its L4 part",
		reason:   `ref: "For a DENY rule, missing attributes are treated as matches. This means all TCP traffic on port 8080 would be denied"`,
		policies: ps(deny("bookinfo/deny-post-8080", rule(to(operation(ports("8080")))))),
		conn:     mtls(gw, "10.2.0.7", "10.1.0.10", 8080),
		want:     deniedBy("bookinfo/deny-post-8080"),
	},
	{
		name:     "DENY rule with only L7 fields denies everything",
		reason:   `ref: "If we were to remove the ports match, all TCP traffic would be denied." (an operation with only methods is an empty L4 match)`,
		policies: ps(deny("bookinfo/deny-post", rule(to(operation())))),
		conn:     gwToBooks,
		want:     deniedBy("bookinfo/deny-post"),
	},
}

func TestConformance(t *testing.T) {
	if n := len(conformance); n < 60 {
		t.Fatalf("the suite has %d cases; it must keep at least 60", n)
	}
	names := map[string]bool{}
	for _, tc := range conformance {
		t.Run(tc.name, func(t *testing.T) {
			if names[tc.name] {
				t.Fatalf("duplicate case name")
			}
			names[tc.name] = true
			if tc.reason == "" || strings.Contains(tc.reason, "\n") {
				t.Fatalf("every case needs a one-line reason from Istio's documentation")
			}
			snap := mesh(t, tc.policies)
			dst, ok := snap.WorkloadByIP(tc.conn.DestinationIP)
			if !ok {
				t.Fatalf("no workload has the destination %s", tc.conn.DestinationIP)
			}
			d := authz.Evaluate(snap.PoliciesFor(dst), tc.conn)
			if d.Allowed != tc.want.allowed || d.Policy != tc.want.policy || !slices.Equal(d.Audited, tc.want.audited) {
				t.Errorf("Evaluate() = allowed %t by %q, audited %q (%s)\nwant allowed %t by %q, audited %q\nbecause %s",
					d.Allowed, d.Policy, d.Audited, d.Reason(), tc.want.allowed, tc.want.policy, tc.want.audited, tc.reason)
			}
			if r := d.Reason(); r == "" || strings.Contains(r, "\n") {
				t.Errorf("Reason() = %q, want one line", r)
			}
		})
	}
}

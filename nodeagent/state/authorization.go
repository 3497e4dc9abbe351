package state

import (
	"net/netip"
	"strconv"
	"strings"
)

// AuthorizationResourcePrefix starts the workload-discovery resource name of an
// authorization: "authorization/<namespace>/<name>".
const AuthorizationResourcePrefix = "authorization/"

// Authorization is an Istio AuthorizationPolicy as the node agent enforces it at L4, on
// connections to the workloads it applies to (weft.workload.v1.Authorization, modelled on
// istio.security.Authorization). The controller has already resolved what L4 cannot check.
//
// An Authorization matches a connection when one of its rules does; without rules it matches
// nothing. Package nodeagent/authz evaluates a workload's policies with Istio's semantics.
//
// An Authorization obtained from a [Snapshot] belongs to it and must not be modified.
type Authorization struct {
	Name      string              `json:"name"`
	Namespace string              `json:"namespace"`
	Scope     AuthorizationScope  `json:"scope"`
	Action    AuthorizationAction `json:"action"`
	// Rules are OR-ed; none means the policy matches no connection (Istio's policy without
	// rules: an ALLOW of that kind allows nothing).
	Rules []AuthorizationRule `json:"rules,omitempty"`

	key string // "<namespace>/<name>", set by NewSnapshot
}

// Key returns "<namespace>/<name>", the policy's name in logs, metrics and
// [Workload.AuthorizationPolicies]. For a policy of a snapshot it does not allocate.
func (a *Authorization) Key() string {
	if a.key != "" {
		return a.key
	}
	return a.Namespace + "/" + a.Name
}

// ResourceName returns the policy's workload-discovery resource name,
// "authorization/<namespace>/<name>".
func (a *Authorization) ResourceName() string { return AuthorizationResourcePrefix + a.Key() }

// AuthorizationRule matches when all its clauses match; a rule without clauses matches every
// connection (Istio's `rules: [{}]`).
type AuthorizationRule struct {
	Clauses []AuthorizationClause `json:"clauses,omitempty"`
}

// AuthorizationClause matches when any of its matches does: the entries of a rule's `from`,
// of its `to`, or the values of one `when` condition. A clause without matches matches every
// connection, as in ztunnel (the controller never sends one).
type AuthorizationClause struct {
	Matches []AuthorizationMatch `json:"matches"`
}

// AuthorizationMatch matches when every field that is set matches: a positive field when one
// of its values matches, a Not field when none does. A match without fields matches every
// connection.
type AuthorizationMatch struct {
	// Namespaces and Principals are the source's, from its mTLS identity; a principal is
	// "<trust domain>/ns/<namespace>/sa/<service account>". A plaintext source has neither: a
	// positive field never matches it, a Not field always does.
	Namespaces    []StringMatch `json:"namespaces,omitempty"`
	NotNamespaces []StringMatch `json:"notNamespaces,omitempty"`
	Principals    []StringMatch `json:"principals,omitempty"`
	NotPrincipals []StringMatch `json:"notPrincipals,omitempty"`
	// SourceIPs and DestinationIPs are CIDRs; a single address is a /32 or /128. NewSnapshot
	// masks them and turns IPv4-mapped IPv6 prefixes into IPv4 ones.
	SourceIPs         []netip.Prefix `json:"sourceIps,omitempty"`
	NotSourceIPs      []netip.Prefix `json:"notSourceIps,omitempty"`
	DestinationIPs    []netip.Prefix `json:"destinationIps,omitempty"`
	NotDestinationIPs []netip.Prefix `json:"notDestinationIps,omitempty"`
	// DestinationPorts are the ports of the destination workload the connection reaches; 0,
	// which Istio accepts, matches no connection.
	DestinationPorts    []uint16 `json:"destinationPorts,omitempty"`
	NotDestinationPorts []uint16 `json:"notDestinationPorts,omitempty"`
}

// IsEmpty reports whether no field of m is set (m then matches every connection).
func (m *AuthorizationMatch) IsEmpty() bool {
	return len(m.Namespaces)+len(m.NotNamespaces)+len(m.Principals)+len(m.NotPrincipals)+
		len(m.SourceIPs)+len(m.NotSourceIPs)+len(m.DestinationIPs)+len(m.NotDestinationIPs)+
		len(m.DestinationPorts)+len(m.NotDestinationPorts) == 0
}

// StringMatch is one of Istio's string forms: exact "a", prefix "a*", suffix "*a", or
// presence "*" (any non-empty value). Its text (and JSON) form is Istio's.
type StringMatch struct {
	Kind  MatchKind
	Value string // empty for MatchPresence
}

// MatchKind is the form of a [StringMatch].
type MatchKind uint8

// String match kinds (the oneof of weft.workload.v1.StringMatch).
const (
	MatchExact    MatchKind = 0 // the value equals Value
	MatchPrefix   MatchKind = 1 // the value starts with Value
	MatchSuffix   MatchKind = 2 // the value ends with Value
	MatchPresence MatchKind = 3 // the value is not empty
)

var matchKindNames = []string{"EXACT", "PREFIX", "SUFFIX", "PRESENCE"}

func (k MatchKind) String() string { return enumString(matchKindNames, k, "MatchKind") }

// Exact, Prefix, Suffix and Presence build StringMatches.
func Exact(v string) StringMatch  { return StringMatch{Kind: MatchExact, Value: v} }
func Prefix(v string) StringMatch { return StringMatch{Kind: MatchPrefix, Value: v} }
func Suffix(v string) StringMatch { return StringMatch{Kind: MatchSuffix, Value: v} }
func Presence() StringMatch       { return StringMatch{Kind: MatchPresence} }

// ParseStringMatch reads Istio's form, as Istio's translation does: "*" is presence, a
// leading "*" makes a suffix match, a trailing one a prefix match, anything else is exact.
func ParseStringMatch(s string) StringMatch {
	switch {
	case s == "*":
		return Presence()
	case strings.HasPrefix(s, "*"):
		return Suffix(s[1:])
	case strings.HasSuffix(s, "*"):
		return Prefix(s[:len(s)-1])
	}
	return Exact(s)
}

// String returns Istio's form of m. [Snapshot.Validate] rejects the matches whose form would
// read back differently (an exact value with a leading or trailing "*", ...).
func (m StringMatch) String() string {
	switch m.Kind {
	case MatchPrefix:
		return m.Value + "*"
	case MatchSuffix:
		return "*" + m.Value
	case MatchPresence:
		return "*"
	}
	return m.Value
}

// Matches reports whether v matches. It does not allocate.
func (m StringMatch) Matches(v string) bool {
	switch m.Kind {
	case MatchExact:
		return v == m.Value
	case MatchPrefix:
		return strings.HasPrefix(v, m.Value)
	case MatchSuffix:
		return strings.HasSuffix(v, m.Value)
	case MatchPresence:
		return v != ""
	}
	return false
}

// MarshalText implements encoding.TextMarshaler: Istio's form.
func (m StringMatch) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler: Istio's form.
func (m *StringMatch) UnmarshalText(b []byte) error {
	*m = ParseStringMatch(string(b))
	return nil
}

// problem describes what is wrong with m, or returns "" when m is a valid match that reads
// back the same from its Istio form.
func (m StringMatch) problem() string {
	const fix = `write a value, "prefix*", "*suffix" or "*" (any value)`
	switch m.Kind {
	case MatchExact:
		switch {
		case m.Value == "":
			return "empty exact value; " + fix
		case strings.HasPrefix(m.Value, "*") || strings.HasSuffix(m.Value, "*"):
			return "exact value " + strconv.Quote(m.Value) + " starts or ends with \"*\", which Istio reads as a wildcard; " + fix
		}
	case MatchPrefix:
		switch {
		case m.Value == "":
			return `empty prefix, which matches any value; write "*" for presence, or a prefix`
		case strings.HasPrefix(m.Value, "*"):
			return "prefix " + strconv.Quote(m.Value) + " starts with \"*\"; Istio has no infix match: " + fix
		}
	case MatchSuffix:
		if m.Value == "" {
			return `empty suffix, which matches any value; write "*" for presence, or a suffix`
		}
	case MatchPresence:
		if m.Value != "" {
			return "presence takes no value (found " + strconv.Quote(m.Value) + `); write "*"`
		}
	default:
		return "unknown match kind " + m.Kind.String() + "; use " + orList(matchKindNames)
	}
	return ""
}

// normalizePrefix masks p and turns an IPv4-mapped IPv6 prefix of at least 96 bits into the
// IPv4 prefix it denotes, so that it contains the unmapped addresses of connections.
func normalizePrefix(p netip.Prefix) netip.Prefix {
	if !p.IsValid() {
		return p
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// ParseCIDR parses a CIDR ("10.0.0.0/8", "fd00::/64") or a single address ("10.0.0.1", a /32;
// "fd00::1", a /128), as Istio's ipBlocks do. It returns the normalized prefix (masked, IPv4
// for IPv4-mapped addresses) and false when s is neither, or carries a zone.
func ParseCIDR(s string) (netip.Prefix, bool) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, false
		}
		return normalizePrefix(p), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), true
}

package hbone

import (
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Baggage keys, as ztunnel writes them.
const (
	keyCluster   = "k8s.cluster.name"
	keyNamespace = "k8s.namespace.name"
	keyService   = "service.name"
	keyVersion   = "service.version"
	keyRegion    = "cloud.region"
	keyZone      = "cloud.availability_zone"
)

// maxBaggageLen bounds the baggage header we parse (the W3C limit).
const maxBaggageLen = 8192

// String encodes b as a W3C baggage header value in ztunnel's key order, percent-encoding
// values and leaving out empty fields. An empty WorkloadKind is written as "deployment".
func (b Baggage) String() string {
	var sb strings.Builder
	add := func(k, v string) {
		if v == "" {
			return
		}
		if sb.Len() > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(k)
		sb.WriteByte('=')
		escapeBaggage(&sb, v)
	}
	add(keyCluster, b.Cluster)
	add(keyNamespace, b.Namespace)
	if b.WorkloadName != "" {
		kind := b.WorkloadKind
		if kind == "" {
			kind = "deployment"
		}
		add("k8s."+kind+".name", b.WorkloadName)
	}
	add(keyService, b.ServiceName)
	add(keyVersion, b.ServiceVersion)
	add(keyRegion, b.Region)
	add(keyZone, b.Zone)
	return sb.String()
}

// isBaggageOctet reports whether c may appear unescaped in a baggage value (W3C baggage-octet,
// without '%', which we always escape so that decoding is unambiguous).
func isBaggageOctet(c byte) bool {
	return c == 0x21 || (c >= 0x23 && c <= 0x2B && c != '%') || (c >= 0x2D && c <= 0x3A) ||
		(c >= 0x3C && c <= 0x5B) || (c >= 0x5D && c <= 0x7E)
}

func escapeBaggage(sb *strings.Builder, v string) {
	const hex = "0123456789ABCDEF"
	for i := range len(v) {
		c := v[i]
		if isBaggageOctet(c) {
			sb.WriteByte(c)
			continue
		}
		sb.WriteByte('%')
		sb.WriteByte(hex[c>>4])
		sb.WriteByte(hex[c&0xF])
	}
}

// parseBaggage extracts the fields Baggage knows from a W3C baggage header value. Unknown keys,
// member properties and malformed members are ignored; so is a header longer than the W3C limit.
func parseBaggage(h string) Baggage {
	var b Baggage
	if len(h) > maxBaggageLen {
		return b
	}
	for member := range strings.SplitSeq(h, ",") {
		kv, _, _ := strings.Cut(member, ";") // drop properties
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		v, err := url.PathUnescape(v)
		if err != nil || k == "" {
			continue
		}
		set := func(dst *string) {
			if *dst == "" {
				*dst = v
			}
		}
		switch k {
		case keyCluster:
			set(&b.Cluster)
		case keyNamespace:
			set(&b.Namespace)
		case keyService:
			set(&b.ServiceName)
		case keyVersion:
			set(&b.ServiceVersion)
		case keyRegion:
			set(&b.Region)
		case keyZone:
			set(&b.Zone)
		default:
			if kind, ok := strings.CutPrefix(k, "k8s."); ok {
				if kind, ok = strings.CutSuffix(kind, ".name"); ok && kind != "" && !strings.Contains(kind, ".") && b.WorkloadName == "" {
					b.WorkloadKind, b.WorkloadName = kind, v
				}
			}
		}
	}
	return b
}

// formatForwarded returns the forwarded header value for the original client address and the
// service hostname it addressed, if any.
func formatForwarded(src netip.AddrPort, host string) string {
	v := `for="` + src.String() + `"`
	if host != "" {
		v += ";host=" + quoteIfNeeded(host)
	}
	return v
}

// quoteIfNeeded returns v as an RFC 7230 token if it is one, else as a quoted string.
func quoteIfNeeded(v string) string {
	for i := range len(v) {
		if !isTokenChar(v[i]) {
			return strconv.Quote(v)
		}
	}
	return v
}

func isTokenChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// parseForwarded returns the for= address of the first element of an RFC 7239 forwarded header
// and its host= parameter. An address without a port has port 0; an obfuscated or malformed
// for= value gives the zero AddrPort.
func parseForwarded(h string) (forAddr netip.AddrPort, host string) {
	elem, _, _ := strings.Cut(h, ",")
	for pair := range strings.SplitSeq(elem, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			} else {
				v = v[1 : len(v)-1]
			}
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "for":
			if ap, err := netip.ParseAddrPort(v); err == nil {
				forAddr = ap
			} else if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")); err == nil {
				forAddr = netip.AddrPortFrom(a, 0)
			}
		case "host":
			host = v
		}
	}
	return forAddr, host
}

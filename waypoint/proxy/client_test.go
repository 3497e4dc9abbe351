package proxy

import (
	"net/netip"
	"testing"

	"github.com/weftmesh/weft/internal/hbone"
)

// The forwarded address is believed only when it names the tunnel's own peer.
func TestClientAddr(t *testing.T) {
	peer := netip.MustParseAddrPort("10.244.1.5:51000")
	for _, tc := range []struct {
		forwarded, want string
	}{
		{"10.244.1.5:40000", "10.244.1.5:40000"}, // the agent's forwarded port of the pod's connection
		{"10.0.0.66:40000", "10.244.1.5:51000"},  // another IP: not believed
		{"", "10.244.1.5:51000"},
	} {
		in := &hbone.Inbound{RemoteAddr: peer}
		if tc.forwarded != "" {
			in.ForwardedFor = netip.MustParseAddrPort(tc.forwarded)
		}
		if got := clientAddr(in); got.String() != tc.want {
			t.Errorf("forwarded %q: client %v, want %s", tc.forwarded, got, tc.want)
		}
	}
}

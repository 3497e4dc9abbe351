package agent

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/weftmesh/weft/nodeagent/config"
	"github.com/weftmesh/weft/nodeagent/state"
)

func TestChangedAddrs(t *testing.T) {
	decode := func(yaml string) *state.Snapshot {
		snap, err := config.Decode([]byte(yaml), "v")
		if err != nil {
			t.Fatal(err)
		}
		return snap
	}
	old := decode(`
workloads:
  - {uid: a, name: a, namespace: ns, serviceAccount: sa, addresses: [198.18.1.2]}
  - {uid: b, name: b, namespace: ns, serviceAccount: sa, addresses: [198.18.1.3]}
  - {uid: c, name: c, namespace: ns, serviceAccount: sa, addresses: [198.18.1.4]}
  - {uid: d, name: d, namespace: ns, serviceAccount: sa, addresses: [198.18.1.5]}
`)
	cur := decode(`
workloads:
  - {uid: a, name: a, namespace: ns, serviceAccount: sa, addresses: [198.18.1.2]}   # unchanged
  - {uid: b2, name: b2, namespace: ns, serviceAccount: sa, addresses: [198.18.1.3]} # another pod at b's IP
  - {uid: c, name: c, namespace: ns, serviceAccount: other, addresses: [198.18.1.4]} # another identity
`) // d is gone
	got := changedAddrs(old, cur)
	want := []netip.Addr{netip.MustParseAddr("198.18.1.3"), netip.MustParseAddr("198.18.1.4"), netip.MustParseAddr("198.18.1.5")}
	slices.SortFunc(got, netip.Addr.Compare)
	if !slices.Equal(got, want) {
		t.Errorf("changedAddrs = %v, want %v", got, want)
	}
}

package enroll

import (
	"net/netip"
	"os/exec"
	"testing"

	"github.com/weftmesh/weft/test/privileged"
)

// TestPrivilegedScan creates a named namespace with an address and finds it by that address.
func TestPrivilegedScan(t *testing.T) {
	privileged.Require(t)
	const ns = "weft-test-enroll-scan"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run("-n", ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1") // dummy links are not built into every kernel
	run("-n", ns, "addr", "add", "198.18.77.5/32", "dev", "d0")
	run("-n", ns, "link", "set", "d0", "up")

	want := netip.MustParseAddr("198.18.77.5")
	absent := netip.MustParseAddr("198.18.77.6")
	found, err := Scan([]netip.Addr{want, absent}, "/run/netns")
	if err != nil {
		t.Fatal(err)
	}
	if found[want] != "/run/netns/"+ns {
		t.Errorf("found %v, want %s in /run/netns/%s", found, want, ns)
	}
	if _, ok := found[absent]; ok {
		t.Errorf("found an address no namespace has: %v", found)
	}
}

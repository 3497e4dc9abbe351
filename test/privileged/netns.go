package privileged

import (
	"fmt"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NewNetNS creates a network namespace with its loopback up, for one test. It lives as long as
// the test holds its descriptor (closed at cleanup), so nothing is left behind even when the
// test binary dies. It returns the handle and a path that names it (/proc/<pid>/fd/<fd>).
func NewNetNS(t testing.TB) (netns.NsHandle, string) {
	t.Helper()
	var h netns.NsHandle
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked on error: the thread dies with the goroutine
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if h, err = netns.New(); err != nil {
			errc <- err
			return
		}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if serr := netns.Set(orig); serr != nil {
			errc <- serr
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h, fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(h))
}

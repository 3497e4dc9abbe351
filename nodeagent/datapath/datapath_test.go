package datapath

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weftmesh/weft/test/privileged"
)

// TestPrivilegedConnect4 attaches the connect program to a temporary cgroup, moves the test
// process into it, dials a loopback listener for real, and checks the counters before and after
// the namespace is enrolled; then it reattaches from the pins, as a restarted agent would.
func TestPrivilegedConnect4(t *testing.T) {
	privileged.Require(t)
	cgRoot, pins := privileged.TempCgroupAndPins(t)

	c, err := AttachConnect(cgRoot, pins)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Detach(); err != nil {
			t.Errorf("detach: %v", err)
		}
	})

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	dial := func() {
		t.Helper()
		privileged.InCgroup(t, cgRoot, func() {
			conn, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			conn.Close()
		})
	}
	want := func(seen, enrolled uint64) {
		t.Helper()
		for s, w := range map[Stat]uint64{StatSeen: seen, StatEnrolled: enrolled} {
			if got, err := c.Count(s); err != nil || got != w {
				t.Errorf("stat %d = %d (%v), want %d", s, got, err, w)
			}
		}
	}

	dial()
	want(1, 0)
	if err := c.Enroll(currentNetNSCookie(t)); err != nil {
		t.Fatal(err)
	}
	dial()
	want(2, 1)

	// An agent restart: a new handle from the pins sees the same state and the same attachment.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c, err = AttachConnect(cgRoot, pins)
	if err != nil {
		t.Fatal(err)
	}
	dial()
	want(3, 2)
	if err := c.Unenroll(currentNetNSCookie(t)); err != nil {
		t.Fatal(err)
	}
	dial()
	want(4, 2)
	if _, err := os.Stat(filepath.Join(pins, "connect4_link")); err != nil {
		t.Errorf("link not pinned: %v", err)
	}
}

// currentNetNSCookie returns the cookie of the test's network namespace (SO_NETNS_COOKIE).
func currentNetNSCookie(t *testing.T) uint64 {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		t.Fatalf("SO_NETNS_COOKIE: %v", err)
	}
	return cookie
}

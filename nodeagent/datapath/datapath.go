// Package datapath loads, attaches and pins Weft's eBPF programs (bpf/) and manages their maps.
// It is the only package of Weft that uses cilium/ebpf; programs are compiled by bpf2go (gen.go)
// and the objects are committed, so loading never needs clang on the node.
package datapath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Stat indexes the connect_stats counters (enum connect_stat in bpf/connect.c).
type Stat uint32

const (
	StatSeen     Stat = 0 // TCP connect() calls seen below the cgroup
	StatEnrolled Stat = 1 // of those, from an enrolled network namespace
)

// Connect is the outbound connect program attached to a cgroup, with its maps pinned under a
// directory of a bpffs so that a restarted agent finds them (and the attachment) again.
type Connect struct {
	objs connectObjects
	link link.Link
}

// AttachConnect loads the connect4 program, pins its maps under pinDir, attaches it to the cgroup
// v2 directory cgroupPath and pins the link. If a link is already pinned there (an agent restart),
// it is reused instead of attaching a second time.
func AttachConnect(cgroupPath, pinDir string) (*Connect, error) {
	if err := os.MkdirAll(pinDir, 0o700); err != nil {
		return nil, fmt.Errorf("datapath: pin dir: %w", err)
	}
	c := &Connect{}
	// The maps are declared with LIBBPF_PIN_BY_NAME: existing pins are reused, new maps pinned.
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: pinDir}}
	if err := loadConnectObjects(&c.objs, opts); err != nil {
		return nil, fmt.Errorf("datapath: load connect: %w", err)
	}
	linkPin := filepath.Join(pinDir, "connect4_link")
	if l, err := link.LoadPinnedLink(linkPin, nil); err == nil {
		c.link = l
		return c, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		c.objs.Close()
		return nil, fmt.Errorf("datapath: pinned link: %w", err)
	}
	l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupPath, Attach: ebpf.AttachCGroupInet4Connect, Program: c.objs.WeftConnect4})
	if err != nil {
		c.objs.Close()
		return nil, fmt.Errorf("datapath: attach connect4 to %s: %w", cgroupPath, err)
	}
	if err := l.Pin(linkPin); err != nil {
		l.Close()
		c.objs.Close()
		return nil, fmt.Errorf("datapath: pin link: %w", err)
	}
	c.link = l
	return c, nil
}

// Enroll marks the network namespace with the given cookie as enrolled.
func (c *Connect) Enroll(netnsCookie uint64) error {
	if err := c.objs.Enrolled.Put(netnsCookie, uint32(0)); err != nil {
		return fmt.Errorf("datapath: enroll netns %d: %w", netnsCookie, err)
	}
	return nil
}

// Unenroll removes a network namespace from the enrolled set. Removing one that is not enrolled
// is not an error.
func (c *Connect) Unenroll(netnsCookie uint64) error {
	if err := c.objs.Enrolled.Delete(netnsCookie); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("datapath: unenroll netns %d: %w", netnsCookie, err)
	}
	return nil
}

// Count returns a counter summed over all CPUs.
func (c *Connect) Count(s Stat) (uint64, error) {
	var perCPU []uint64
	if err := c.objs.ConnectStats.Lookup(uint32(s), &perCPU); err != nil {
		return 0, fmt.Errorf("datapath: stat %d: %w", s, err)
	}
	var sum uint64
	for _, v := range perCPU {
		sum += v
	}
	return sum, nil
}

// Close releases this process's handles. The pinned link keeps the program attached; Detach
// removes it for good.
func (c *Connect) Close() error {
	return errors.Join(c.link.Close(), c.objs.Close())
}

// Detach unpins and detaches the program and removes its pinned maps.
func (c *Connect) Detach() error {
	errs := []error{c.link.Unpin()}
	for _, m := range []*ebpf.Map{c.objs.Enrolled, c.objs.ConnectStats} {
		errs = append(errs, m.Unpin())
	}
	errs = append(errs, c.Close())
	return errors.Join(errs...)
}

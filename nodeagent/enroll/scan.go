package enroll

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Scan finds the network namespaces that hold any of the given addresses: named namespaces under
// netnsDirs (e.g. /var/run/netns) first, then those of running processes (/proc/<pid>/ns/net),
// each namespace visited once. It returns a path for every address found.
func Scan(want []netip.Addr, netnsDirs ...string) (map[netip.Addr]string, error) {
	wanted := make(map[netip.Addr]bool, len(want))
	for _, a := range want {
		wanted[a.Unmap()] = true
	}
	found := map[netip.Addr]string{}
	seen := map[uint64]bool{}
	self, err := nsInode("/proc/self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("enroll: scan: %w", err)
	}
	seen[self] = true // the agent's own (the node's) namespace holds no pod
	visit := func(path string) {
		ino, err := nsInode(path)
		if err != nil || seen[ino] {
			return
		}
		seen[ino] = true
		addrs, err := addressesIn(path)
		if err != nil {
			return // gone meanwhile, or not a namespace
		}
		for _, a := range addrs {
			if wanted[a] {
				if _, dup := found[a]; !dup {
					found[a] = path
				}
			}
		}
	}
	for _, dir := range netnsDirs {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			visit(filepath.Join(dir, e.Name()))
		}
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err == nil {
			visit(filepath.Join("/proc", p.Name(), "ns", "net"))
		}
		if len(found) == len(wanted) {
			break
		}
	}
	return found, nil
}

func nsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// addressesIn lists the global unicast addresses of the namespace at path.
func addressesIn(path string) ([]netip.Addr, error) {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	h, err := netlink.NewHandleAt(target)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	list, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range list {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap().IsGlobalUnicast() {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}

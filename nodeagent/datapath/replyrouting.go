package datapath

// InstallReplyRouting installs, in the calling thread's network namespace (call it inside
// podnet.Do), the routing that returns an application's replies to the agent's transparent
// upstream sockets marked with mark (see srcip.go), for the given families (unix.AF_INET,
// unix.AF_INET6), using routing table table. It is idempotent. EnrollPod does this itself; it is
// exported for the iptables capture (nodeagent/iptables), which shares the agent's marks.
func InstallReplyRouting(mark uint32, table int, families []int) error {
	return replyRouting{mark: mark, table: table}.install(families)
}

// RemoveReplyRouting undoes InstallReplyRouting in the calling thread's network namespace; what
// is already gone is not an error.
func RemoveReplyRouting(mark uint32, table int, families []int) error {
	return replyRouting{mark: mark, table: table}.remove(families)
}

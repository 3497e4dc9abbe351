package iptables

import (
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/sys/unix"
)

// jump is a rule in a built-in chain that sends TCP to one of Weft's chains. Its text is what
// iptables-save prints for it, so that presentJumps can find it.
type jump struct{ from, to string }

var jumps = []jump{{"OUTPUT", ChainOutput}, {"PREROUTING", ChainPrerouting}}

func (j jump) rule() string { return fmt.Sprintf("%s -p tcp -j %s", j.from, j.to) }

// presentJumps counts, per jump, how often it occurs in an iptables-save listing.
func presentJumps(saved string) map[jump]int {
	n := map[jump]int{}
	for _, line := range strings.Split(saved, "\n") {
		for _, j := range jumps {
			if strings.TrimSpace(line) == "-A "+j.rule() {
				n[j]++
			}
		}
	}
	return n
}

// hasChain reports whether an iptables-save listing declares chain.
func hasChain(saved, chain string) bool {
	for _, line := range strings.Split(saved, "\n") {
		if strings.HasPrefix(line, ":"+chain+" ") {
			return true
		}
	}
	return false
}

// rules returns the iptables-restore --noflush payload that (re)writes Weft's chains for one
// family and adds the jumps that are not present yet. Declaring a chain flushes it, so applying
// it again replaces the rules atomically.
func (c Config) rules(fam int, pc PodConfig, present map[jump]int) string {
	var b strings.Builder
	add := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	add("*nat")
	add(":%s - [0:0]", ChainOutput)
	add(":%s - [0:0]", ChainPrerouting)

	// Outbound: the agent's own sockets (the upstream mark matches too) and loopback traffic
	// stay; every other TCP connect goes to the agent's outbound listener on 127.0.0.1 / ::1.
	add("-A %s -m mark --mark %#x/%#x -j RETURN", ChainOutput, c.AgentMark, c.AgentMarkMask)
	add("-A %s -o lo -j RETURN", ChainOutput)
	for _, port := range pc.ExcludeOutboundPorts {
		add("-A %s -p tcp -m tcp --dport %d -j RETURN", ChainOutput, port)
	}
	add("-A %s -p tcp -j REDIRECT --to-ports %d", ChainOutput, c.OutboundPort)

	// Inbound: HBONE, excluded ports, probes from the gateways and anything arriving over lo
	// stay; TCP to the pod's addresses goes to the agent's plaintext inbound listener.
	add("-A %s -i lo -j RETURN", ChainPrerouting)
	add("-A %s -p tcp -m tcp --dport %d -j RETURN", ChainPrerouting, c.HBONEPort)
	for _, port := range pc.ExcludeInboundPorts {
		add("-A %s -p tcp -m tcp --dport %d -j RETURN", ChainPrerouting, port)
	}
	for _, gw := range pc.Gateways {
		if family(gw) == fam {
			add("-A %s -s %s -j RETURN", ChainPrerouting, hostPrefix(gw))
		}
	}
	if !pc.BypassInbound {
		for _, ip := range pc.IPs {
			if family(ip) == fam {
				add("-A %s -d %s -p tcp -j REDIRECT --to-ports %d", ChainPrerouting, hostPrefix(ip), c.InboundPort)
			}
		}
	}
	for _, j := range jumps {
		if present[j] == 0 {
			add("-A %s", j.rule())
		}
	}
	add("COMMIT")
	return b.String()
}

// removal returns the iptables-restore --noflush payload that removes Weft's jumps and chains
// from an iptables-save listing, or "" when there is nothing to remove.
func removal(saved string) string {
	present := presentJumps(saved)
	var b strings.Builder
	add := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	for _, j := range jumps {
		for range present[j] {
			add("-D %s", j.rule())
		}
	}
	for _, chain := range []string{ChainOutput, ChainPrerouting} {
		if hasChain(saved, chain) {
			add("-X %s", chain)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	// Declaring the chains flushes them (and creates a missing one, which -X then deletes), so
	// that -X finds them empty.
	return fmt.Sprintf("*nat\n:%s - [0:0]\n:%s - [0:0]\n%sCOMMIT\n", ChainOutput, ChainPrerouting, b.String())
}

func hostPrefix(ip netip.Addr) string {
	ip = ip.Unmap()
	return netip.PrefixFrom(ip, ip.BitLen()).String()
}

// familyName is for messages.
func familyName(fam int) string {
	if fam == unix.AF_INET6 {
		return "IPv6"
	}
	return "IPv4"
}

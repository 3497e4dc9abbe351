package iptables

import (
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func mustConfig(t *testing.T, c Config) Config {
	t.Helper()
	c, err := c.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRules(t *testing.T) {
	pod := PodConfig{
		NetNSPath:            "/x",
		IPs:                  []netip.Addr{netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("fd00::5")},
		Gateways:             []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")},
		ExcludeInboundPorts:  []uint16{9090},
		ExcludeOutboundPorts: []uint16{5432},
	}
	bypass := pod
	bypass.BypassInbound = true
	cfg := mustConfig(t, Config{})
	tests := []struct {
		name    string
		fam     int
		pod     PodConfig
		present map[jump]int
		want    []string // lines that must appear, in this order
		notWant []string
	}{
		{
			name: "ipv4 fresh",
			fam:  unix.AF_INET,
			pod:  pod,
			want: []string{
				"*nat",
				":WEFT_OUTPUT - [0:0]",
				":WEFT_PREROUTING - [0:0]",
				"-A WEFT_OUTPUT -m mark --mark 0x539/0xfff -j RETURN",
				"-A WEFT_OUTPUT -o lo -j RETURN",
				"-A WEFT_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN",
				"-A WEFT_OUTPUT -p tcp -j REDIRECT --to-ports 15001",
				"-A WEFT_PREROUTING -i lo -j RETURN",
				"-A WEFT_PREROUTING -p tcp -m tcp --dport 15008 -j RETURN",
				"-A WEFT_PREROUTING -p tcp -m tcp --dport 9090 -j RETURN",
				"-A WEFT_PREROUTING -s 10.0.0.1/32 -j RETURN",
				"-A WEFT_PREROUTING -d 10.0.0.5/32 -p tcp -j REDIRECT --to-ports 15006",
				"-A OUTPUT -p tcp -j WEFT_OUTPUT",
				"-A PREROUTING -p tcp -j WEFT_PREROUTING",
				"COMMIT",
			},
			notWant: []string{"fd00::"},
		},
		{
			name:    "ipv6 with jumps present",
			fam:     unix.AF_INET6,
			pod:     pod,
			present: map[jump]int{jumps[0]: 1, jumps[1]: 1},
			want: []string{
				"-A WEFT_PREROUTING -s fd00::1/128 -j RETURN",
				"-A WEFT_PREROUTING -d fd00::5/128 -p tcp -j REDIRECT --to-ports 15006",
				"COMMIT",
			},
			notWant: []string{"10.0.0.", "-A OUTPUT", "-A PREROUTING"},
		},
		{
			name:    "bypass inbound",
			fam:     unix.AF_INET,
			pod:     bypass,
			want:    []string{"-A WEFT_OUTPUT -p tcp -j REDIRECT --to-ports 15001", "-A PREROUTING -p tcp -j WEFT_PREROUTING"},
			notWant: []string{"--to-ports 15006"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cfg.rules(tt.fam, tt.pod, tt.present)
			lines := strings.Split(strings.TrimSpace(got), "\n")
			i := 0
			for _, w := range tt.want {
				for i < len(lines) && lines[i] != w {
					i++
				}
				if i == len(lines) {
					t.Fatalf("missing or out of order %q in\n%s", w, got)
				}
			}
			for _, nw := range tt.notWant {
				if strings.Contains(got, nw) {
					t.Errorf("unexpected %q in\n%s", nw, got)
				}
			}
		})
	}
}

func TestRulesCustomMarksAndPorts(t *testing.T) {
	cfg := mustConfig(t, Config{AgentMark: 0x10, AgentMarkMask: 0xf0, UpstreamMark: 0x110, OutboundPort: 1, InboundPort: 2, HBONEPort: 3})
	got := cfg.rules(unix.AF_INET, PodConfig{IPs: []netip.Addr{netip.MustParseAddr("10.1.1.1")}}, nil)
	for _, w := range []string{"--mark 0x10/0xf0 -j RETURN", "--dport 3 -j RETURN", "REDIRECT --to-ports 1", "REDIRECT --to-ports 2"} {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in\n%s", w, got)
		}
	}
}

func TestRemoval(t *testing.T) {
	tests := []struct {
		name, saved, want string
	}{
		{"nothing", "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n", ""},
		{
			"everything, a jump twice",
			"*nat\n:OUTPUT ACCEPT [0:0]\n:WEFT_OUTPUT - [0:0]\n:WEFT_PREROUTING - [0:0]\n-A OUTPUT -p tcp -j WEFT_OUTPUT\n-A OUTPUT -p tcp -j WEFT_OUTPUT\n-A PREROUTING -p tcp -j WEFT_PREROUTING\n-A WEFT_OUTPUT -o lo -j RETURN\nCOMMIT\n",
			"*nat\n:WEFT_OUTPUT - [0:0]\n:WEFT_PREROUTING - [0:0]\n-D OUTPUT -p tcp -j WEFT_OUTPUT\n-D OUTPUT -p tcp -j WEFT_OUTPUT\n-D PREROUTING -p tcp -j WEFT_PREROUTING\n-X WEFT_OUTPUT\n-X WEFT_PREROUTING\nCOMMIT\n",
		},
		{
			"chain without jump",
			"*nat\n:WEFT_OUTPUT - [0:0]\nCOMMIT\n",
			"*nat\n:WEFT_OUTPUT - [0:0]\n:WEFT_PREROUTING - [0:0]\n-X WEFT_OUTPUT\nCOMMIT\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := removal(tt.saved); got != tt.want {
				t.Errorf("removal:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"mark outside mask", Config{AgentMark: 0x1000}, "AgentMarkMask"},
		{"upstream not an agent mark", Config{UpstreamMark: 0x1538}, "UpstreamMark"},
		{"upstream equals agent mark", Config{UpstreamMark: 0x539}, "UpstreamMark"},
		{"ports collide", Config{InboundPort: 15001}, "must differ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg.withDefaults()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one naming %q", err, tt.want)
			}
		})
	}
}

func TestPodConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		pc   PodConfig
		want string
	}{
		{"no path", PodConfig{IPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}, "NetNSPath"},
		{"no ips", PodConfig{NetNSPath: "/x"}, "IPs"},
		{"invalid gateway", PodConfig{NetNSPath: "/x", IPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, Gateways: []netip.Addr{{}}}, "invalid address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.pc.families()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one naming %q", err, tt.want)
			}
		})
	}
}

package datapath

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestConfigDefaults(t *testing.T) {
	paths := Config{CgroupPath: "/cg", PinDir: "/pins"}
	tests := []struct {
		name    string
		cfg     func(Config) Config
		wantErr string
	}{
		{"defaults", func(c Config) Config { return c }, ""},
		{"no paths", func(Config) Config { return Config{} }, "CgroupPath and PinDir"},
		{"mark outside its mask", func(c Config) Config { c.AgentMark = 0x1539; return c }, "outside its mask"},
		{"upstream mark not an agent mark", func(c Config) Config { c.UpstreamMark = 0x1111; return c }, "not an agent mark"},
		{"upstream mark equal to the agent mark", func(c Config) Config { c.UpstreamMark = DefaultAgentMark; return c }, "must differ"},
		{"custom marks", func(c Config) Config {
			c.AgentMark, c.AgentMarkMask, c.UpstreamMark = 0x10, 0xff, 0x110
			return c
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cfg(paths).withDefaults()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.AgentMark == 0 || got.UpstreamMark == 0 || got.OutboundPort != DefaultOutboundPort || got.HBONEPort != DefaultHBONEPort || got.ReplyTable != DefaultReplyTable {
				t.Errorf("defaults not filled in: %+v", got)
			}
		})
	}
}

func TestPodConfigEncode(t *testing.T) {
	ip4, ip6 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::1")
	var listener syscall.Conn = os.Stdin // any socket stand-in: encode does not inspect it
	valid := PodConfig{
		NetNSPath:            "/proc/1/ns/net",
		IPs:                  []netip.Addr{ip4, ip6},
		Gateways:             []netip.Addr{netip.MustParseAddr("198.18.0.254")},
		ExcludeInboundPorts:  []uint16{8081},
		ExcludeOutboundPorts: []uint16{53, 443},
		Inbound:              []syscall.Conn{listener},
	}
	ports := func(n int) []uint16 {
		p := make([]uint16, n)
		for i := range p {
			p[i] = uint16(i + 1)
		}
		return p
	}
	tests := []struct {
		name      string
		mod       func(*PodConfig)
		wantErr   string
		wantFlags podFlag
		wantFams  []int
	}{
		{"dual stack", func(*PodConfig) {}, "", podOutbound | podInbound, []int{unix.AF_INET, unix.AF_INET6}},
		{"ipv4-mapped address is ipv4", func(c *PodConfig) { c.IPs = []netip.Addr{netip.MustParseAddr("::ffff:198.18.0.1")} }, "", podOutbound | podInbound, []int{unix.AF_INET}},
		{"bypass inbound needs no listener", func(c *PodConfig) { c.BypassInbound, c.Inbound = true, nil }, "", podOutbound, []int{unix.AF_INET, unix.AF_INET6}},
		{"no netns", func(c *PodConfig) { c.NetNSPath = "" }, "no netns", 0, nil},
		{"no IPs", func(c *PodConfig) { c.IPs = nil }, "no pod IPs", 0, nil},
		{"invalid IP", func(c *PodConfig) { c.IPs = []netip.Addr{{}} }, "invalid pod IP", 0, nil},
		{"too many IPs", func(c *PodConfig) { c.IPs = slices.Repeat([]netip.Addr{ip4}, maxPodIPs+1) }, "pod IPs, at most", 0, nil},
		{"too many gateways", func(c *PodConfig) { c.Gateways = slices.Repeat([]netip.Addr{ip4}, maxProbeSources+1) }, "gateways, at most", 0, nil},
		{"too many inbound ports", func(c *PodConfig) { c.ExcludeInboundPorts = ports(maxPorts + 1) }, "inbound ports, at most", 0, nil},
		{"too many outbound ports", func(c *PodConfig) { c.ExcludeOutboundPorts = ports(maxPorts + 1) }, "outbound ports, at most", 0, nil},
		{"as many ports as fit", func(c *PodConfig) { c.ExcludeOutboundPorts = ports(maxPorts) }, "", podOutbound | podInbound, []int{unix.AF_INET, unix.AF_INET6}},
		{"no listener", func(c *PodConfig) { c.Inbound = nil }, "no inbound listener", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.mod(&cfg)
			pc, fams, err := cfg.encode()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pc.Flags != tt.wantFlags || !slices.Equal(fams, tt.wantFams) {
				t.Errorf("flags %b, families %v; want %b, %v", pc.Flags, fams, tt.wantFlags, tt.wantFams)
			}
			if int(pc.NIPs) != len(cfg.IPs) || int(pc.NExcludeOut) != len(cfg.ExcludeOutboundPorts) || int(pc.NExcludeIn) != len(cfg.ExcludeInboundPorts) || int(pc.NProbeSources) != len(cfg.Gateways) {
				t.Errorf("counts %d/%d/%d/%d do not match the config", pc.NIPs, pc.NExcludeOut, pc.NExcludeIn, pc.NProbeSources)
			}
			for i, ip := range cfg.IPs {
				if pc.IPs[i] != ip.As16() {
					t.Errorf("IP %d: %x, want %v as 16 bytes", i, pc.IPs[i], ip)
				}
			}
			if !slices.Equal(pc.ExcludeOutPorts[:pc.NExcludeOut], cfg.ExcludeOutboundPorts) {
				t.Errorf("excluded outbound ports %v, want %v", pc.ExcludeOutPorts[:pc.NExcludeOut], cfg.ExcludeOutboundPorts)
			}
		})
	}
}

func TestStatNames(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range AllStats() {
		name := s.String()
		if name == "" || seen[name] || strings.HasPrefix(name, "stat_") {
			t.Errorf("stat %d: name %q missing or repeated", s, name)
		}
		seen[name] = true
	}
	if got, want := Stat(numStats).String(), fmt.Sprintf("stat_%d", numStats); got != want {
		t.Errorf("unknown stat named %q, want %q", got, want)
	}
}

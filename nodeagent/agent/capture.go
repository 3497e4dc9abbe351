package agent

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/weftmesh/weft/nodeagent/datapath"
	"github.com/weftmesh/weft/nodeagent/iptables"
	"github.com/weftmesh/weft/nodeagent/proxy"
)

// Capture modes (Config.Capture).
const (
	// CaptureEBPF is the eBPF data path (nodeagent/datapath), the default.
	CaptureEBPF = "ebpf"
	// CaptureIPTables is iptables REDIRECT rules in each pod (nodeagent/iptables), as Istio's
	// in-pod redirection does; for comparison with the eBPF path.
	CaptureIPTables = "iptables"
)

// capture is how the agent brings an enrolled pod's connections to its listeners.
type capture interface {
	// listenConfig configures the agent's listeners in pods.
	listenConfig() net.ListenConfig
	// enroll turns capture on for a pod whose listeners are open; Close turns it off.
	enroll(datapath.PodConfig) (io.Closer, error)
	// enrolledPods and unenroll reconcile, after a restart, pods an earlier agent enrolled.
	enrolledPods() ([]uint64, error)
	unenroll(netnsCookie uint64) error
	// deps fills in how the proxy learns original destinations and configures its sockets.
	deps(*proxy.Deps)
	// close releases handles; capture of enrolled pods stays on.
	close() error
}

// newCapture sets up the capture of the given mode.
func newCapture(mode string, cfg datapath.Config, log *slog.Logger) (capture, *datapath.Datapath, error) {
	switch mode {
	case "", CaptureEBPF:
		dp, err := datapath.Attach(cfg)
		if err != nil {
			return nil, nil, err
		}
		return ebpfCapture{dp}, dp, nil
	case CaptureIPTables:
		if err := removeEBPF(cfg, log); err != nil {
			return nil, nil, err
		}
		c, err := iptables.New(iptables.Config{
			AgentMark: cfg.AgentMark, AgentMarkMask: cfg.AgentMarkMask, UpstreamMark: cfg.UpstreamMark,
			OutboundPort: cfg.OutboundPort, InboundPort: proxy.InboundPort, HBONEPort: cfg.HBONEPort,
			ReplyTable: cfg.ReplyTable,
		})
		if err != nil {
			return nil, nil, err
		}
		return iptCapture{c}, nil, nil
	default:
		return nil, nil, fmt.Errorf("capture mode %q: use %q or %q", mode, CaptureEBPF, CaptureIPTables)
	}
}

// removeEBPF detaches an eBPF data path an earlier agent left pinned under cfg.PinDir: its
// programs would otherwise keep capturing the pods it enrolled.
func removeEBPF(cfg datapath.Config, log *slog.Logger) error {
	if cfg.PinDir == "" {
		return nil
	}
	if _, err := os.Stat(filepath.Join(cfg.PinDir, "connect4_link")); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	log.Info("iptables capture: removing the eBPF data path an earlier agent left attached", "pins", cfg.PinDir)
	dp, err := datapath.Attach(cfg)
	if err == nil {
		err = dp.Detach()
	}
	if err != nil {
		return fmt.Errorf("iptables capture: removing the pinned eBPF data path under %s: %w (remove it by hand, or run with --capture=ebpf)", cfg.PinDir, err)
	}
	return nil
}

type ebpfCapture struct{ dp *datapath.Datapath }

func (e ebpfCapture) listenConfig() net.ListenConfig { return e.dp.AgentListenConfig() }

func (e ebpfCapture) enroll(pc datapath.PodConfig) (io.Closer, error) { return e.dp.EnrollPod(pc) }

func (e ebpfCapture) enrolledPods() ([]uint64, error) { return e.dp.EnrolledPods() }

func (e ebpfCapture) unenroll(cookie uint64) error { return e.dp.Unenroll(cookie) }

func (e ebpfCapture) deps(d *proxy.Deps) {
	dpc := e.dp.Config()
	d.OriginalDst = e.dp.OriginalDst
	d.ControlAgent = datapath.MarkControl(dpc.AgentMark)
	d.ControlUpstream = datapath.TransparentControl(dpc.UpstreamMark)
}

func (e ebpfCapture) close() error { return e.dp.Close() }

type iptCapture struct{ c *iptables.Capture }

func (i iptCapture) listenConfig() net.ListenConfig {
	// Plain TCP: SO_ORIGINAL_DST is not available on MPTCP sockets.
	lc := net.ListenConfig{Control: datapath.MarkControl(i.c.Config().AgentMark)}
	lc.SetMultipathTCP(false)
	return lc
}

func (i iptCapture) enroll(pc datapath.PodConfig) (io.Closer, error) {
	return i.c.EnrollPod(iptables.PodConfig{
		NetNSPath: pc.NetNSPath, IPs: pc.IPs, Gateways: pc.Gateways,
		ExcludeInboundPorts: pc.ExcludeInboundPorts, ExcludeOutboundPorts: pc.ExcludeOutboundPorts,
		BypassInbound: pc.BypassInbound,
	})
}

// enrolledPods is empty: rules live in the pods' namespaces and nothing records them.
func (iptCapture) enrolledPods() ([]uint64, error) { return nil, nil }

func (iptCapture) unenroll(uint64) error { return nil }

func (i iptCapture) deps(d *proxy.Deps) {
	cfg := i.c.Config()
	d.ConnDst = iptables.OriginalDst
	d.ControlAgent = datapath.MarkControl(cfg.AgentMark)
	d.ControlUpstream = datapath.TransparentControl(cfg.UpstreamMark)
}

func (iptCapture) close() error { return nil }

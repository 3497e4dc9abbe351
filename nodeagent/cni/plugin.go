// Package cni is Weft's chained CNI plugin (cmd/weft-cni) and its installation by the node agent.
//
// The plugin runs after the cluster's primary CNI in the pod's network chain: on ADD it passes the
// previous result through unchanged and tells the node agent about the new sandbox (network
// namespace, addresses, pod name), waiting for the agent's verdict so that an ambient pod is
// enrolled before its containers start; on DEL it tells the agent the sandbox is going away.
// Like istio-cni, the agent installs the plugin itself: it copies the binary into the node's CNI
// binary directory and appends the plugin to the node's CNI configuration (Install).
package cni

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/weftmesh/weft/nodeagent/enroll"
)

// PluginType is the plugin's name in a conflist.
const PluginType = "weft-cni"

// Conf is the plugin's configuration in the conflist.
type Conf struct {
	types.NetConf
	// Socket is the node agent's enrollment socket (default enroll.DefaultSocket).
	Socket string `json:"socket,omitempty"`
	// Timeout bounds the wait for the agent's verdict (default 10s).
	Timeout string `json:"timeout,omitempty"`
}

// k8sArgs are the CNI_ARGS a kubelet (or the harness) passes.
type k8sArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE          types.UnmarshallableString //nolint:revive // CNI_ARGS names
	K8S_POD_NAME               types.UnmarshallableString //nolint:revive
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString //nolint:revive
	K8S_POD_UID                types.UnmarshallableString //nolint:revive
}

// Funcs returns the plugin's command functions for skel.PluginMainFuncs.
func Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck}
}

// About describes the plugin for CNI's VERSION command.
const About = "weft-cni: enrolls pods in the Weft mesh through the node agent"

// Versions are the CNI spec versions the plugin speaks.
var Versions = version.PluginSupports("0.4.0", "1.0.0", "1.1.0")

func parse(args *skel.CmdArgs) (*Conf, enroll.Event, time.Duration, error) {
	var conf Conf
	if err := json.Unmarshal(args.StdinData, &conf); err != nil {
		return nil, enroll.Event{}, 0, fmt.Errorf("weft-cni: config: %w", err)
	}
	if err := version.ParsePrevResult(&conf.NetConf); err != nil {
		return nil, enroll.Event{}, 0, fmt.Errorf("weft-cni: prevResult: %w", err)
	}
	if conf.Socket == "" {
		conf.Socket = enroll.DefaultSocket
	}
	timeout := 10 * time.Second
	if conf.Timeout != "" {
		d, err := time.ParseDuration(conf.Timeout)
		if err != nil {
			return nil, enroll.Event{}, 0, fmt.Errorf("weft-cni: config: timeout %q: %w (write e.g. \"10s\")", conf.Timeout, err)
		}
		timeout = d
	}
	var ka k8sArgs
	if err := types.LoadArgs(args.Args, &ka); err != nil {
		return nil, enroll.Event{}, 0, fmt.Errorf("weft-cni: CNI_ARGS: %w", err)
	}
	ev := enroll.Event{
		ContainerID: args.ContainerID,
		NetNS:       args.Netns,
		Namespace:   string(ka.K8S_POD_NAMESPACE),
		Name:        string(ka.K8S_POD_NAME),
		UID:         string(ka.K8S_POD_UID),
	}
	return &conf, ev, timeout, nil
}

func cmdAdd(args *skel.CmdArgs) error {
	conf, ev, timeout, err := parse(args)
	if err != nil {
		return err
	}
	if conf.PrevResult == nil {
		return fmt.Errorf("weft-cni: must be chained after the primary network plugin (no prevResult)")
	}
	prev, err := current.GetResult(conf.PrevResult)
	if err != nil {
		return fmt.Errorf("weft-cni: prevResult: %w", err)
	}
	for _, ip := range prev.IPs {
		if a, ok := netip.AddrFromSlice(ip.Address.IP); ok {
			ev.IPs = append(ev.IPs, a.Unmap())
		}
	}
	ev.Op = enroll.OpAdd
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := enroll.Notify(ctx, conf.Socket, ev); err != nil {
		return fmt.Errorf("weft-cni: %w", err)
	}
	return types.PrintResult(conf.PrevResult, conf.CNIVersion)
}

func cmdDel(args *skel.CmdArgs) error {
	conf, ev, timeout, err := parse(args)
	if err != nil {
		return err
	}
	ev.Op = enroll.OpDel
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// DEL must succeed when the agent is away: it reconciles gone pods when it comes back.
	_ = enroll.Notify(ctx, conf.Socket, ev)
	return nil
}

func cmdCheck(*skel.CmdArgs) error { return nil }

package cni

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/weftmesh/weft/nodeagent/enroll"
)

// agent runs an enrollment server on a temporary socket that records events and answers with verdict.
func agent(t *testing.T, verdict error) (socket string, events <-chan enroll.Event) {
	t.Helper()
	socket = filepath.Join(t.TempDir(), "cni.sock")
	ch := make(chan enroll.Event, 4)
	ctx, cancel := context.WithCancel(context.Background())
	srv := &enroll.Server{Path: socket, Handle: func(_ context.Context, ev enroll.Event) error {
		ch <- ev
		return verdict
	}}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(socket); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("enrollment server did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return socket, ch
}

func stdin(socket string, prev bool) []byte {
	conf := map[string]any{"cniVersion": "1.0.0", "name": "net", "type": PluginType, "socket": socket, "timeout": "2s"}
	if prev {
		conf["prevResult"] = map[string]any{
			"cniVersion": "1.0.0",
			"interfaces": []any{map[string]any{"name": "eth0", "sandbox": "/run/netns/p"}},
			"ips":        []any{map[string]any{"address": "198.18.1.5/24", "interface": 0}},
		}
	}
	b, _ := json.Marshal(conf)
	return b
}

func cmdArgs(data []byte) *skel.CmdArgs {
	return &skel.CmdArgs{
		ContainerID: "c1", Netns: "/run/netns/p", IfName: "eth0", StdinData: data,
		Args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=mesh;K8S_POD_NAME=books-1;K8S_POD_UID=u-1",
	}
}

func TestAddNotifiesAgent(t *testing.T) {
	socket, events := agent(t, nil)
	if err := cmdAdd(cmdArgs(stdin(socket, true))); err != nil {
		t.Fatal(err)
	}
	ev := <-events
	want := enroll.Event{Op: enroll.OpAdd, ContainerID: "c1", Namespace: "mesh", Name: "books-1", UID: "u-1",
		NetNS: "/run/netns/p", IPs: []netip.Addr{netip.MustParseAddr("198.18.1.5")}}
	if ev.Op != want.Op || ev.Name != want.Name || ev.Namespace != want.Namespace || ev.UID != want.UID ||
		ev.NetNS != want.NetNS || len(ev.IPs) != 1 || ev.IPs[0] != want.IPs[0] {
		t.Errorf("event = %+v, want %+v", ev, want)
	}
}

func TestAddFailsWhenAgentRefuses(t *testing.T) {
	socket, _ := agent(t, errors.New("no certificate for mesh/books yet"))
	err := cmdAdd(cmdArgs(stdin(socket, true)))
	if err == nil || !strings.Contains(err.Error(), "no certificate for mesh/books yet") {
		t.Errorf("error = %v, want the agent's reason", err)
	}
}

func TestAddNeedsPrevResult(t *testing.T) {
	socket, _ := agent(t, nil)
	err := cmdAdd(cmdArgs(stdin(socket, false)))
	if err == nil || !strings.Contains(err.Error(), "chained") {
		t.Errorf("error = %v, want one saying the plugin must be chained", err)
	}
}

func TestAddFailsWithoutAgent(t *testing.T) {
	err := cmdAdd(cmdArgs(stdin(filepath.Join(t.TempDir(), "none.sock"), true)))
	if err == nil || !strings.Contains(err.Error(), "node agent") {
		t.Errorf("error = %v, want one naming the node agent", err)
	}
}

func TestDelSucceedsWithoutAgent(t *testing.T) {
	if err := cmdDel(cmdArgs(stdin(filepath.Join(t.TempDir(), "none.sock"), false))); err != nil {
		t.Errorf("DEL must succeed when the agent is away: %v", err)
	}
}

func TestBadTimeout(t *testing.T) {
	data := []byte(`{"cniVersion":"1.0.0","name":"n","type":"weft-cni","timeout":"ten"}`)
	if err := cmdDel(cmdArgs(data)); err == nil || !strings.Contains(err.Error(), `timeout "ten"`) {
		t.Errorf("error = %v, want one naming the timeout field", err)
	}
}

func TestInstall(t *testing.T) {
	dir := t.TempDir()
	bin, binDir, confDir := filepath.Join(dir, "weft-cni-src"), filepath.Join(dir, "bin"), filepath.Join(dir, "net.d")
	must(t, os.WriteFile(bin, []byte("#!plugin"), 0o755))
	must(t, os.MkdirAll(confDir, 0o755))
	if err := Install(bin, binDir, confDir, nil); err == nil || !strings.Contains(err.Error(), "no .conflist") {
		t.Fatalf("no conflist: %v", err)
	}
	must(t, os.WriteFile(filepath.Join(confDir, "20-other.conflist"), []byte(`{"name":"other","plugins":[{"type":"x"}]}`), 0o644))
	must(t, os.WriteFile(filepath.Join(confDir, "10-main.conflist"), []byte(`{"cniVersion":"1.0.0","name":"main","plugins":[{"type":"bridge"}]}`), 0o644))
	for range 2 { // idempotent
		must(t, Install(bin, binDir, confDir, map[string]any{"socket": "/var/run/weft/cni.sock"}))
	}
	var list struct {
		Plugins []map[string]any `json:"plugins"`
	}
	raw, _ := os.ReadFile(filepath.Join(confDir, "10-main.conflist"))
	must(t, json.Unmarshal(raw, &list))
	if len(list.Plugins) != 2 || list.Plugins[1]["type"] != PluginType || list.Plugins[1]["socket"] != "/var/run/weft/cni.sock" {
		t.Errorf("plugins = %v", list.Plugins)
	}
	other, _ := os.ReadFile(filepath.Join(confDir, "20-other.conflist"))
	if strings.Contains(string(other), PluginType) {
		t.Error("only the first conflist is changed")
	}
	if b, err := os.ReadFile(filepath.Join(binDir, PluginType)); err != nil || string(b) != "#!plugin" {
		t.Errorf("binary = %q, %v", b, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Temporary debugging command; removed before the end.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/test/bench"
	"github.com/weftmesh/weft/test/harness"
	"github.com/weftmesh/weft/test/mesh"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := harness.Start(ctx, harness.Options{Nodes: 2, RepoRoot: "/work/main", NoDNS: true, Progress: os.Stdout})
	must(err)
	defer c.Close()
	fortio := c.Binary("fortio")
	target, err := bench.NewTopology("bench").Deploy(ctx, c, fortio)
	must(err)
	must(mesh.Apply(ctx, c, nil))
	must(mesh.InstallNodeAgent(ctx, c))
	sw := &bench.MeshSwitch{Cluster: c, Target: target, Fortio: fortio, Settle: 500 * time.Millisecond, Timeout: 30 * time.Second}
	must(sw.Enroll(ctx))
	agents, err := bench.NodeAgents(ctx, c)
	must(err)
	m := &bench.AgentMeter{Agents: agents}
	for _, qps := range os.Args[1:] {
		stop, err := m.Start()
		must(err)
		statBefore := procStat(agents)
		go profile(c.Nodes[0], "/tmp/prof-node1-"+qps+".pb.gz")
		out, err := c.Exec(ctx, target.Namespace, target.ClientPod, fortio, "load", "-qps", qps, "-uniform", "-t", "5s", "-c", "16", "-loglevel", "Warning", target.HTTPURL+"?size=1024")
		s, err2 := stop()
		fmt.Println("load", qps, err, err2, string(out[max(0, len(out)-120):]))
		fmt.Println("meter", s)
		fmt.Println("proc stat ticks delta", procStat(agents)-statBefore)
		time.Sleep(2 * time.Second)
	}
}

func procStat(agents []bench.Agent) int {
	total := 0
	for _, a := range agents {
		b, _ := os.ReadFile(a.Cgroup + "/cgroup.procs")
		for _, pid := range strings.Fields(string(b)) {
			st, _ := os.ReadFile("/proc/" + pid + "/stat")
			f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+2:]))
			u, _ := strconv.Atoi(f[11])
			s, _ := strconv.Atoi(f[12])
			total += u + s
		}
	}
	return total
}

func profile(n *harness.Node, path string) {
	client := &http.Client{Transport: &http.Transport{DialContext: n.NetNS.DialContext}, Timeout: 20 * time.Second}
	resp, err := client.Get("http://127.0.0.1:15000/debug/pprof/profile?seconds=4")
	if err != nil {
		fmt.Println("profile", err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	os.WriteFile(path, b, 0o644)
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

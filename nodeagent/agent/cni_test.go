package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/nodeagent/enroll"
	"github.com/weftmesh/weft/nodeagent/state"
)

// TestCNIAddDecisions covers the CNI ADD decisions that need no datapath: a pod the source has
// not described is refused when the source describes every pod (the controller), and started
// unenrolled otherwise (a local file); a described pod outside the mesh and a pod of a system
// namespace start at once. Enrolling an ambient pod at ADD is covered by the e2e tests.
func TestCNIAddDecisions(t *testing.T) {
	described := &state.Workload{UID: "Kubernetes//Pod/shop/plain", Name: "plain", Namespace: "shop", Node: "node-a"}
	snap := state.NewSnapshot("1", []*state.Workload{described}, nil)
	ip := netip.MustParseAddr("198.18.1.7")
	for _, tc := range []struct {
		name        string
		describes   bool
		ns, pod     string
		wantErr     string
		minDuration time.Duration
	}{
		{name: "undescribed pod refused", describes: true, ns: "shop", pod: "new", wantErr: "has not described it", minDuration: 100 * time.Millisecond},
		{name: "undescribed pod, file source", describes: false, ns: "shop", pod: "new"},
		{name: "described, not in the mesh", describes: true, ns: "shop", pod: "plain"},
		{name: "system namespace", describes: true, ns: "kube-system", pod: "coredns-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &Agent{
				cfg:       Config{Node: "node-a", DescribesAllPods: tc.describes, CNIAddWait: 100 * time.Millisecond},
				log:       slog.New(slog.DiscardHandler),
				store:     &state.Store{},
				sandboxes: map[netip.Addr]string{},
				pods:      map[string]sandbox{},
				unfound:   map[netip.Addr]bool{},
				served:    map[string]*served{},
				ready:     true,
			}
			if err := a.store.Replace(snap); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err := a.onCNI(context.Background(), enroll.Event{Op: enroll.OpAdd, Namespace: tc.ns, Name: tc.pod, NetNS: "/var/run/netns/x", IPs: []netip.Addr{ip}})
			took := time.Since(start)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("ADD refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("ADD error %v, want one containing %q", err, tc.wantErr)
			case took < tc.minDuration:
				t.Fatalf("ADD decided after %v, before waiting %v for the description", took, tc.minDuration)
			}
			if _, ok := a.pods[tc.ns+"/"+tc.pod]; !ok {
				t.Error("sandbox not recorded by name")
			}
			if err := a.onCNI(context.Background(), enroll.Event{Op: enroll.OpDel, Namespace: tc.ns, Name: tc.pod, NetNS: "/var/run/netns/x", IPs: []netip.Addr{ip}}); err != nil {
				t.Fatal(err)
			}
			if len(a.pods) != 0 || len(a.sandboxes) != 0 {
				t.Errorf("DEL left sandboxes: %v %v", a.pods, a.sandboxes)
			}
		})
	}
}

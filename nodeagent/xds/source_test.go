package xds

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/grpc/codes"

	"github.com/weftmesh/weft/api"
	workloadv1 "github.com/weftmesh/weft/api/workload/v1"
)

const (
	web2UID = "Kubernetes//Pod/shop/web-2"
	web3UID = "Kubernetes//Pod/shop/web-3"
)

func TestSourceInitialSync(t *testing.T) {
	cp := startControlPlane(t,
		workloadAddr(webUID, "10.0.0.1"),
		workloadAddr(web2UID, "10.0.0.2"),
		serviceAddr(webUID, web2UID))
	var a agent
	src := startSource(t, cp.addr, &a)
	waitFor(t, "the first snapshot", a.store.Applied)

	snap := a.store.Load()
	if got := a.uids(); !slices.Equal(got, []string{webUID, web2UID}) {
		t.Errorf("workloads = %v", got)
	}
	svcs := snap.Services()
	if len(svcs) != 1 || svcs[0].NamespacedHostname() != webSvc || len(svcs[0].Endpoints) != 2 {
		t.Errorf("services = %+v", svcs)
	}
	if w, port, ok := snap.PickEndpoint(svcs[0], 80, nil); !ok || port != 8080 || w.UID != webUID {
		t.Errorf("PickEndpoint = %v, %d, %v", w, port, ok)
	}

	// The first request: node, type, wildcard, nothing held yet.
	first := cp.reqs()[0]
	if first.GetNode().GetId() != "node-a" || first.GetNode().GetCluster() != "Kubernetes" ||
		first.GetTypeUrl() != api.AddressType || !slices.Equal(first.GetResourceNamesSubscribe(), []string{"*"}) ||
		len(first.GetInitialResourceVersions()) != 0 || first.GetResponseNonce() != "" {
		t.Errorf("first request = %v", first)
	}
	waitFor(t, "the ACK", func() bool { acks, _ := cp.acks(); return len(acks) == 1 })
	acks, nacks := cp.acks()
	resp := cp.streamResponses(0)[0]
	if len(nacks) != 0 || acks[0].GetResponseNonce() != resp.GetNonce() {
		t.Errorf("acks %v, nacks %v, response nonce %s", acks, nacks, resp.GetNonce())
	}
	// The snapshot's version is the response's system_version_info.
	if snap.Version() == "" || snap.Version() != resp.GetSystemVersionInfo() {
		t.Errorf("version %q, system_version_info %q", snap.Version(), resp.GetSystemVersionInfo())
	}
	st := src.Status()
	if st.Source != "xds:"+cp.addr || st.Version != snap.Version() || st.Applied.IsZero() ||
		st.LastError != nil || st.Rejected != "" || st.Disconnected {
		t.Errorf("status = %+v", st)
	}
}

func TestSourceEmptyServerDeliversEmptySnapshot(t *testing.T) {
	cp := startControlPlane(t)
	var a agent
	src := startSource(t, cp.addr, &a)
	waitFor(t, "the first snapshot", a.store.Applied)
	if n := len(a.store.Load().Workloads()); n != 0 {
		t.Errorf("%d workloads", n)
	}
	if st := src.Status(); st.Disconnected || st.LastError != nil {
		t.Errorf("status = %+v", st)
	}
}

func TestSourceUpdatesAndDeletions(t *testing.T) {
	cp := startControlPlane(t,
		workloadAddr(webUID, "10.0.0.1"),
		workloadAddr(web2UID, "10.0.0.2"),
		serviceAddr(webUID, web2UID))
	var a agent
	src := startSource(t, cp.addr, &a)
	waitFor(t, "the first snapshot", a.store.Applied)

	// Update a workload.
	cp.update(workloadAddr(webUID, "10.0.0.11"))
	waitFor(t, "the updated workload", func() bool {
		w, ok := a.store.Load().WorkloadByUID(webUID)
		return ok && w.Addresses[0].String() == "10.0.0.11"
	})
	// Add one and update the service to use it, in one response.
	if err := cp.cache.UpdateResources(map[string]types.Resource{
		web3UID: workloadAddr(web3UID, "10.0.0.3"),
		webSvc:  serviceAddr(webUID, web2UID, web3UID),
	}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the third endpoint", func() bool {
		svcs := a.store.Load().Services()
		return len(svcs) == 1 && len(svcs[0].Endpoints) == 3
	})
	// Delete the service, then a workload.
	cp.delete(webSvc)
	waitFor(t, "the service's deletion", func() bool { return len(a.store.Load().Services()) == 0 })
	cp.delete(web2UID)
	waitFor(t, "the workload's deletion", func() bool { return slices.Equal(a.uids(), []string{webUID, web3UID}) })

	if _, nacks := cp.acks(); len(nacks) != 0 {
		t.Errorf("NACKs: %v", nacks)
	}
	st := src.Status()
	if st.Version != a.store.Load().Version() || st.LastError != nil {
		t.Errorf("status = %+v, version in force %s", st, a.store.Load().Version())
	}
}

func TestSourceNACK(t *testing.T) {
	badIP := workloadAddr(web2UID, "10.0.0.x")
	dupIP := workloadAddr(web2UID, "10.0.0.1")
	rejectMe := workloadAddr(web2UID, "10.0.0.2")
	rejectMe.GetWorkload().Name = "reject-me"
	unknownEndpoint := serviceAddr(webUID, web3UID)
	named := workloadAddr(web2UID, "10.0.0.2")
	noBody := &workloadv1.Address{Name: "nothing"}

	tests := []struct {
		name   string
		send   func(cp *controlPlane)
		want   string // the NACK's message
		status string // Status().LastError
	}{
		{
			name: "malformed address",
			send: func(cp *controlPlane) { cp.update(badIP) },
			want: `workload "Kubernetes//Pod/shop/web-2": addresses[0]: "10.0.0.x" is not an IP address; write an IPv4 or IPv6 address`,
		},
		{
			name: "address of another workload",
			send: func(cp *controlPlane) { cp.update(dupIP) },
			want: `workload "Kubernetes//Pod/shop/web-2": addresses[0]: 10.0.0.1 is already an address of workload "Kubernetes//Pod/shop/web-1"; give every workload its own addresses`,
		},
		{
			name: "endpoint of an unknown workload",
			send: func(cp *controlPlane) { cp.update(unknownEndpoint) },
			want: `service "shop/web.shop.svc.cluster.local": endpoints[1].workloadUid: no workload has uid "Kubernetes//Pod/shop/web-3"; add that workload or remove the endpoint`,
		},
		{
			name: "resource named unlike its Address",
			send: func(cp *controlPlane) { cp.updateAs("Kubernetes//Pod/shop/other", named) },
			want: `workload "Kubernetes//Pod/shop/other": name: "Kubernetes//Pod/shop/web-2" differs from the name of the xDS resource; name the resource and the Address alike` + "\n" +
				`workload "Kubernetes//Pod/shop/other": uid: "Kubernetes//Pod/shop/web-2" differs from the resource name; name a workload resource after its uid`,
		},
		{
			name: "neither workload nor service",
			send: func(cp *controlPlane) { cp.update(noBody) },
			want: `resource "nothing": neither workload, service nor authorization is set; an Address describes one of them`,
		},
		{
			name: "rejected by the agent",
			send: func(cp *controlPlane) { cp.update(rejectMe) },
			want: `rejected by the agent: workload reject-me is not welcome`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp := startControlPlane(t, workloadAddr(webUID, "10.0.0.1"), serviceAddr(webUID))
			var a agent
			src := startSource(t, cp.addr, &a)
			waitFor(t, "the first snapshot", a.store.Applied)
			good := a.store.Load()
			delivered := a.delivered()

			tt.send(cp)
			waitFor(t, "the NACK", func() bool { _, nacks := cp.acks(); return len(nacks) == 1 })
			_, nacks := cp.acks()
			detail := nacks[0].GetErrorDetail()
			if detail.GetCode() != int32(codes.InvalidArgument) || detail.GetMessage() != tt.want {
				t.Errorf("NACK = %d %q\nwant %d %q", detail.GetCode(), detail.GetMessage(), codes.InvalidArgument, tt.want)
			}
			// The last good snapshot stays; apply saw the bad one only if it converted.
			if a.store.Load() != good {
				t.Error("the last good snapshot is no longer in force")
			}
			wantDelivered := delivered
			if strings.HasPrefix(tt.want, "rejected by the agent") {
				wantDelivered++
			}
			if got := a.delivered(); got != wantDelivered {
				t.Errorf("apply called %d times, want %d", got, wantDelivered)
			}
			st := src.Status()
			nonce := nacks[0].GetResponseNonce()
			rejected := cp.streamResponses(0)[1] // the second response
			if rejected.GetNonce() != nonce {
				t.Fatalf("NACKed nonce %s, second response %s", nonce, rejected.GetNonce())
			}
			wantErr := "xds: version " + rejected.GetSystemVersionInfo() + ": " + tt.want
			if st.LastError == nil || st.LastError.Error() != wantErr || st.Rejected != rejected.GetSystemVersionInfo() ||
				st.Failed.IsZero() || st.Version != good.Version() || st.Disconnected {
				t.Errorf("status = %+v\nwant error %q", st, wantErr)
			}
			if !strings.HasPrefix(tt.want, "rejected") {
				var re *ResourceError
				if !errors.As(st.LastError, &re) {
					t.Errorf("LastError does not carry a *ResourceError: %#v", st.LastError)
				}
			}

			// A later good update applies on top of the last good state, and settles the
			// rejection.
			cp.cache.SetResources(map[string]types.Resource{
				webUID:  workloadAddr(webUID, "10.0.0.1"),
				web2UID: workloadAddr(web2UID, "10.0.0.2"),
				webSvc:  serviceAddr(webUID, web2UID),
			})
			waitFor(t, "recovery", func() bool { return src.Status().LastError == nil })
			if got := a.uids(); !slices.Equal(got, []string{webUID, web2UID}) {
				t.Errorf("workloads after recovery = %v", got)
			}
			if svcs := a.store.Load().Services(); len(svcs) != 1 || len(svcs[0].Endpoints) != 2 {
				t.Errorf("services after recovery = %+v", svcs)
			}
		})
	}
}

// TestSourceNACKKeepsPending: a good response that does not touch the rejected resource
// applies, but the rejection stays reported until the resource is fixed.
func TestSourceNACKKeepsPending(t *testing.T) {
	cp := startControlPlane(t, workloadAddr(webUID, "10.0.0.1"))
	var a agent
	src := startSource(t, cp.addr, &a)
	waitFor(t, "the first snapshot", a.store.Applied)

	cp.update(workloadAddr(web2UID, "10.0.0.x"))
	waitFor(t, "the NACK", func() bool { return src.Status().LastError != nil })
	cp.update(workloadAddr(web3UID, "10.0.0.3"))
	waitFor(t, "the other update", func() bool { return slices.Equal(a.uids(), []string{webUID, web3UID}) })
	if st := src.Status(); st.LastError == nil || !strings.Contains(st.LastError.Error(), web2UID) {
		t.Errorf("the rejection of %s is no longer reported: %+v", web2UID, st)
	}
	cp.update(workloadAddr(web2UID, "10.0.0.2"))
	waitFor(t, "recovery", func() bool { return src.Status().LastError == nil })
	if got := a.uids(); !slices.Equal(got, []string{webUID, web2UID, web3UID}) {
		t.Errorf("workloads = %v", got)
	}
}

func TestSourceControllerAway(t *testing.T) {
	cp := startControlPlane(t,
		workloadAddr(webUID, "10.0.0.1"),
		workloadAddr(web2UID, "10.0.0.2"),
		serviceAddr(webUID, web2UID))
	var a agent
	src := startSource(t, cp.addr, &a)
	waitFor(t, "the first snapshot", a.store.Applied)
	before := a.store.Load()

	// The controller goes away: the agent keeps its configuration.
	cp.stop()
	waitFor(t, "disconnected", func() bool { return src.Status().Disconnected })
	waitFor(t, "a failed reconnection", func() bool { return src.Status().LastError != nil })
	st := src.Status()
	if !strings.HasPrefix(st.LastError.Error(), "xds: "+cp.addr+": ") ||
		!strings.HasSuffix(st.LastError.Error(), "; the last good configuration stays in force") ||
		st.Version != before.Version() || st.Failed.IsZero() {
		t.Errorf("status while away = %+v", st)
	}
	// Meanwhile the mesh changes: a workload goes, another changes, the service follows.
	cp.delete(web2UID)
	cp.update(serviceAddr(webUID))
	cp.update(workloadAddr(webUID, "10.0.0.11"))
	time.Sleep(50 * time.Millisecond) // a few back-off rounds
	if a.store.Load() != before {
		t.Fatal("the configuration changed while the controller was away")
	}
	n := len(cp.reqs())

	// It comes back on the same address: the agent reconnects and resyncs.
	cp.restart()
	waitFor(t, "the resync", func() bool {
		w, ok := a.store.Load().WorkloadByUID(webUID)
		return ok && w.Addresses[0].String() == "10.0.0.11" && slices.Equal(a.uids(), []string{webUID})
	})
	waitFor(t, "connected", func() bool { st := src.Status(); return !st.Disconnected && st.LastError == nil })
	if svcs := a.store.Load().Services(); len(svcs) != 1 || len(svcs[0].Endpoints) != 1 {
		t.Errorf("services after resync = %+v", svcs)
	}

	// The new stream announced what the agent held, so the server sent only the changes.
	var initial map[string]string
	for _, r := range cp.reqs()[n:] {
		if r.GetNode() != nil {
			initial = r.GetInitialResourceVersions()
			break
		}
	}
	if len(initial) != 3 || initial[webUID] == "" || initial[web2UID] == "" || initial[webSvc] == "" {
		t.Errorf("initial_resource_versions = %v", initial)
	}
	resps := cp.streamResponses(1)
	if len(resps) == 0 {
		t.Fatal("no response on the second stream")
	}
	var names []string
	for _, r := range resps[0].GetResources() {
		names = append(names, r.GetName())
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{webUID, webSvc}) || !slices.Equal(resps[0].GetRemovedResources(), []string{web2UID}) {
		t.Errorf("resync sent %v and removed %v", names, resps[0].GetRemovedResources())
	}
}

func TestSourceCannotConnectAtStart(t *testing.T) {
	// A port with nothing behind it.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()

	var a agent
	src := startSource(t, addr, &a)
	waitFor(t, "the connection error", func() bool { return src.Status().LastError != nil })
	st := src.Status()
	if !st.Disconnected || !strings.HasSuffix(st.LastError.Error(), "; no configuration received yet") || a.delivered() != 0 {
		t.Errorf("status = %+v", st)
	}
}

func TestSourceRunStopsOnCancel(t *testing.T) {
	cp := startControlPlane(t, workloadAddr(webUID, "10.0.0.1"))
	conn := dial(t, cp.addr)
	for _, connected := range []bool{true, false} {
		var a agent
		opts := testOptions()
		opts.MinBackoff, opts.MaxBackoff = time.Hour, time.Hour // cancel during the back-off
		src := NewSource(conn, cp.addr, opts)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- src.Run(ctx, a.apply) }()
		if connected {
			waitFor(t, "the first snapshot", a.store.Applied)
		} else {
			cp.stop()
			waitFor(t, "disconnected", func() bool { return src.Status().LastError != nil })
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run() = %v, want nil", err)
			}
		case <-time.After(time.Second):
			t.Fatalf("Run did not return after cancel (connected %v)", connected)
		}
	}
}

func TestSourceRunErrors(t *testing.T) {
	cp := startControlPlane(t)
	conn := dial(t, cp.addr)
	var a agent
	opts := testOptions()
	opts.Node = ""
	if err := NewSource(conn, cp.addr, opts).Run(context.Background(), a.apply); err == nil || !strings.Contains(err.Error(), "Options.Node") {
		t.Errorf("Run without a node = %v", err)
	}

	src := NewSource(conn, cp.addr, testOptions())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, a.apply) }()
	waitFor(t, "the first snapshot", a.store.Applied)
	if err := src.Run(ctx, a.apply); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("a second Run = %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() = %v", err)
	}
}

func TestNewSourceStatus(t *testing.T) {
	src := NewSource(nil, "controller:15012", Options{Node: "n"})
	st := src.Status()
	if st.Source != "xds:controller:15012" || !st.Disconnected || st.LastError != nil || st.Version != "" {
		t.Errorf("status = %+v", st)
	}
}

// TestSourceResyncAfterNACK: good resources that arrived beside a bad one are counted as
// delivered by the server; once the bad one is fixed, a resync stream makes the server send
// them again.
func TestSourceResyncAfterNACK(t *testing.T) {
	cp := startControlPlane(t, workloadAddr(webUID, "10.0.0.1"))
	a := &agent{}
	opts := testOptions()
	opts.ResyncAfterNACK = 200 * time.Millisecond
	src := NewSource(dial(t, cp.addr), cp.addr, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, a.apply) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor(t, "the initial snapshot", func() bool { return a.delivered() == 1 })

	good, bad := workloadAddr(web2UID, "10.0.0.2"), workloadAddr(web3UID, "10.0.0.x")
	if err := cp.cache.UpdateResources(map[string]types.Resource{web2UID: good, web3UID: bad}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the NACK", func() bool { _, nacks := cp.acks(); return len(nacks) == 1 })
	cp.update(workloadAddr(web3UID, "10.0.0.3"))
	waitFor(t, "the fixed workload", func() bool { return slices.Contains(a.uids(), web3UID) })
	waitFor(t, "the good workload, resent by a resync", func() bool { return slices.Contains(a.uids(), web2UID) })
	if src.Status().LastError != nil {
		t.Errorf("Status().LastError = %v after the resync", src.Status().LastError)
	}
}

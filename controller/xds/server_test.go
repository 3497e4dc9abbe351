package xds

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/translate"
)

// authByHeader lets a test caller act for the node in its "x-node" metadata, or as the
// "<namespace>/<service account>/<pod>" in its "x-sa" metadata; the real controller
// authenticates with the CA's TokenReview instead.
func authByHeader(ctx context.Context) (Peer, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-node"); len(v) == 1 {
		return Peer{Node: v[0]}, nil
	}
	if v := md.Get("x-sa"); len(v) == 1 {
		parts := strings.SplitN(v[0], "/", 3)
		return Peer{Namespace: parts[0], ServiceAccount: parts[1], Pod: parts[2]}, nil
	}
	return Peer{}, status.Error(codes.Unauthenticated, "no token")
}

func pod(name, node, ip string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
		Spec:       corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: ip}}, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue},
		}},
	}
}

func mesh(pods ...*corev1.Pod) *translate.Mesh {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{api.LabelDataplaneMode: api.DataplaneModeAmbient}}}
	return translate.Build(translate.Input{Namespaces: []*corev1.Namespace{ns}, Pods: pods}, translate.Options{})
}

func serve(t *testing.T) (*Server, *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := New(ctx, Options{Authenticate: authByHeader})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	s.Register(g)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return s, conn
}

type client struct {
	t      *testing.T
	stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
}

func subscribe(t *testing.T, conn *grpc.ClientConn, asNode, node string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if asNode != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-node", asNode)
	}
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, stream: st}
	c.send(&discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: node}, TypeUrl: api.AddressType})
	return c
}

func (c *client) send(req *discovery.DeltaDiscoveryRequest) {
	c.t.Helper()
	// io.EOF: the server ended the stream (refused it); Recv returns its status.
	if err := c.stream.Send(req); err != nil && !errors.Is(err, io.EOF) {
		c.t.Fatal(err)
	}
}

func (c *client) recv() *discovery.DeltaDiscoveryResponse {
	c.t.Helper()
	resp, err := c.stream.Recv()
	if err != nil {
		c.t.Fatal(err)
	}
	return resp
}

func names(resp *discovery.DeltaDiscoveryResponse) []string {
	var out []string
	for _, r := range resp.Resources {
		out = append(out, r.Name)
	}
	return out
}

func TestDeltaPushACKAndNACK(t *testing.T) {
	s, conn := serve(t)
	a := pod("a", "node-a", "198.18.1.5")
	b := pod("b", "node-b", "198.18.2.5")
	s.Push(context.Background(), mesh(a, b), []string{"node-a", "node-b"})

	c := subscribe(t, conn, "node-a", "node-a")
	first := c.recv()
	if got := names(first); len(got) != 2 {
		t.Fatalf("first response has %v, want both enrolled workloads", got)
	}
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: api.AddressType, ResponseNonce: first.Nonce})

	// Only the changed workload is sent again; a removed one is named in RemovedResources.
	b2 := pod("b", "node-b", "198.18.2.6")
	s.Push(context.Background(), mesh(a, b2), []string{"node-a", "node-b"})
	second := c.recv()
	if got := names(second); len(got) != 1 || got[0] != "Kubernetes//Pod/shop/b" {
		t.Fatalf("second response has %v, want only the changed workload", got)
	}
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: api.AddressType, ResponseNonce: second.Nonce,
		ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "addresses[0]: bad"}})
	s.Push(context.Background(), mesh(a), []string{"node-a", "node-b"})
	third := c.recv()
	if len(third.Resources) != 0 || len(third.RemovedResources) != 1 {
		t.Fatalf("third response: resources %v, removed %v; want the deletion only", names(third), third.RemovedResources)
	}

	waitStatus(t, s, "node-a", func(st NodeStatus) bool {
		return st.Streams == 1 && st.Nacked == second.SystemVersionInfo && st.NackError == "addresses[0]: bad" && st.Acked == first.SystemVersionInfo
	})
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: api.AddressType, ResponseNonce: third.Nonce})
	waitStatus(t, s, "node-a", func(st NodeStatus) bool { return st.InSync() && st.NackError == "" })
}

func TestStreamRefused(t *testing.T) {
	s, conn := serve(t)
	s.Push(context.Background(), mesh(pod("a", "node-a", "198.18.1.5")), []string{"node-a"})
	for _, tc := range []struct {
		name, as string
		code     codes.Code
	}{
		{"no credentials", "", codes.Unauthenticated},
		{"another node", "node-b", codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := subscribe(t, conn, tc.as, "node-a")
			_, err := c.stream.Recv()
			if status.Code(err) != tc.code {
				t.Fatalf("Recv: %v, want code %v", err, tc.code)
			}
		})
	}
}

func TestNewNodeTriggersPush(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	asked := make(chan string, 1)
	s, err := New(ctx, Options{Authenticate: authByHeader, NewNode: func(n string) { asked <- n }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.onOpen(metadata.NewIncomingContext(ctx, metadata.Pairs("x-node", "node-z")), 1, api.AddressType); err != nil {
		t.Fatal(err)
	}
	if err := s.onRequest(1, &discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: "node-z"}, TypeUrl: api.AddressType}); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-asked:
		if n != "node-z" {
			t.Fatalf("NewNode(%q)", n)
		}
	default:
		t.Fatal("NewNode not called for a node without a snapshot")
	}
}

func waitStatus(t *testing.T, s *Server, node string, ok func(NodeStatus) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, st := range s.Statuses() {
			if st.Node == node && ok(st) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("status of %s: %+v", node, s.Statuses())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDigestIsAdditive(t *testing.T) {
	m := mesh(pod("a", "node-a", "198.18.1.5"), pod("b", "node-b", "198.18.2.5"))
	all := m.ForNode("node-a")
	if got, want := digest(m.Shared())+digest(m.Local("node-a")), digest(all); got != want {
		t.Fatalf("digest(shared)+digest(local) = %x, digest(union) = %x", got, want)
	}
	b := pod("b", "node-b", "198.18.2.6")
	if digest(mesh(pod("a", "node-a", "198.18.1.5"), b).ForNode("node-a")) == digest(all) {
		t.Fatal("a changed address left the digest unchanged")
	}
}

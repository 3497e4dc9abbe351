package echoserver

import (
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

func TestGRPCHealth(t *testing.T) {
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, hs := NewGRPCServer(Config{Name: "ratings", Version: "v2", PodName: "ratings-v2-0"}, testLogger(t))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)

	tests := []struct {
		service string
		want    healthpb.HealthCheckResponse_ServingStatus
	}{
		{"", healthpb.HealthCheckResponse_SERVING},
		{"ratings", healthpb.HealthCheckResponse_SERVING},
	}
	for _, tt := range tests {
		var md metadata.MD
		resp, err := client.Check(t.Context(), &healthpb.HealthCheckRequest{Service: tt.service}, grpc.Header(&md))
		if err != nil {
			t.Fatalf("check %q: %v", tt.service, err)
		}
		if resp.GetStatus() != tt.want {
			t.Errorf("check %q = %v, want %v", tt.service, resp.GetStatus(), tt.want)
		}
		if got := md.Get(MDVersion); len(got) != 1 || got[0] != "v2" {
			t.Errorf("version metadata = %q", got)
		}
		if got := md.Get(MDName); len(got) != 1 || got[0] != "ratings" {
			t.Errorf("name metadata = %q", got)
		}
	}
	hs.Shutdown()
	resp, err := client.Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("after shutdown: %v, %v", resp.GetStatus(), err)
	}
}

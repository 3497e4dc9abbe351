package load

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/test/apps/client/report"
	"github.com/weftmesh/weft/test/apps/echo/echoserver"
)

// GRPCOptions configures gRPC health checks.
type GRPCOptions struct {
	Service string // health service name; "" is the server as a whole
	Timeout time.Duration
	// NewConn dials a new connection for every request.
	NewConn bool
}

// GRPC returns a Func calling grpc.health.v1.Health/Check on addr
// (host:port, plaintext), and a function releasing its connection. A
// SERVING response is OK; the sample's Status is the serving status or,
// on error, the gRPC code.
func GRPC(addr string, o GRPCOptions) (Func, func(), error) {
	dial := func() (*grpc.ClientConn, error) {
		conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, fmt.Errorf("grpc: dial %s: %w", addr, err)
		}
		return conn, nil
	}
	var shared *grpc.ClientConn
	if !o.NewConn {
		var err error
		if shared, err = dial(); err != nil {
			return nil, nil, err
		}
	}
	fn := func(ctx context.Context) report.Sample {
		conn := shared
		if conn == nil {
			c, err := dial()
			if err != nil {
				return report.Sample{Err: err}
			}
			defer c.Close()
			conn = c
		}
		if o.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, o.Timeout)
			defer cancel()
		}
		var md metadata.MD
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: o.Service}, grpc.Header(&md))
		s := report.Sample{Services: identifyMD(md)}
		if err != nil {
			st := status.Convert(err)
			s.Status = st.Code().String()
			s.Err = &report.KindError{Kind: "grpc_" + snake(st.Code().String()), Err: fmt.Errorf("grpc: check: %w", err)}
			return s
		}
		s.Status = resp.GetStatus().String()
		s.OK = resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
		return s
	}
	closeFn := func() {
		if shared != nil {
			_ = shared.Close()
		}
	}
	return fn, closeFn, nil
}

func identifyMD(md metadata.MD) []report.Service {
	name, version := first(md.Get(echoserver.MDName)), first(md.Get(echoserver.MDVersion))
	if name == "" && version == "" {
		return nil
	}
	return []report.Service{{Name: name, Version: version}}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// snake converts "DeadlineExceeded" to "deadline_exceeded".
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

package echoserver

import (
	"context"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
)

// gRPC response header metadata keys naming the serving instance.
const (
	MDName    = "x-echo-name"
	MDVersion = "x-echo-version"
	MDPod     = "x-echo-pod"
)

// NewGRPCServer returns a gRPC server exposing the standard health service
// (SERVING for "" and for cfg.Name) and server reflection. Every unary
// response carries the MDName, MDVersion and MDPod header metadata. Call
// health.Shutdown on the returned health server before stopping.
func NewGRPCServer(cfg Config, logger *slog.Logger) (*grpc.Server, *health.Server) {
	md := metadata.Pairs(MDName, cfg.Name, MDVersion, cfg.Version, MDPod, cfg.PodName)
	identify := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := grpc.SetHeader(ctx, md); err != nil {
			logger.Debug("grpc set header", "method", info.FullMethod, "err", err)
		}
		return handler(ctx, req)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(identify))
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	if cfg.Name != "" {
		hs.SetServingStatus(cfg.Name, healthpb.HealthCheckResponse_SERVING)
	}
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return srv, hs
}

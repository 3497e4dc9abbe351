package upstream

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// MetadataNamespace is the filter_metadata key of an LbEndpoint's Weft metadata.
const MetadataNamespace = "weft"

// Endpoint is one upstream host of a cluster. It is a comparable value: two endpoints with
// the same address and metadata are the same host, and keep their state across updates.
type Endpoint struct {
	// Addr is where to connect (for DNS clusters, the resolved address).
	Addr netip.AddrPort
	// Hostname is the DNS name Addr was resolved from (STRICT_DNS and LOGICAL_DNS clusters).
	Hostname string
	// Tunnel is true when the endpoint is a mesh workload reached through an HBONE tunnel
	// (metadata "tunnel": "HBONE"); false means plain TCP.
	Tunnel bool
	// Identity is the workload's SPIFFE ID; Workload, Namespace, App and Version its pod
	// name, namespace, canonical service and canonical revision (all from the metadata).
	Identity, Workload, Namespace, App, Version string
}

// String is the endpoint's address, as Envoy's upstream_host.
func (e *Endpoint) String() string { return e.Addr.String() }

// Dialer opens the connections of every upstream pool: an HBONE stream when ep.Tunnel is
// set, plain TCP otherwise. The context bounds the dial (connect_timeout).
type Dialer interface {
	Dial(ctx context.Context, ep *Endpoint) (net.Conn, error)
}

// Resolver resolves the hostnames of STRICT_DNS and LOGICAL_DNS clusters; *net.Resolver
// implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// parseMetadata copies the endpoint's "weft" filter metadata into ep. Absent metadata is
// a plain TCP endpoint; a present field of the wrong type is an error.
func parseMetadata(md *corev3.Metadata, ep *Endpoint) error {
	s := md.GetFilterMetadata()[MetadataNamespace]
	if s == nil {
		return nil
	}
	for k, v := range s.GetFields() {
		sv, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return fmt.Errorf("metadata.filter_metadata[%q].%s must be a string", MetadataNamespace, k)
		}
		str := sv.StringValue
		switch k {
		case "tunnel":
			switch str {
			case "HBONE":
				ep.Tunnel = true
			case "":
			default:
				return fmt.Errorf("metadata.filter_metadata[%q].tunnel %q is not supported; use \"HBONE\" or leave it out for plain TCP", MetadataNamespace, str)
			}
		case "identity":
			ep.Identity = str
		case "workload":
			ep.Workload = str
		case "namespace":
			ep.Namespace = str
		case "app":
			ep.App = str
		case "version":
			ep.Version = str
		}
	}
	return nil
}

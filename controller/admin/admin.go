// Package admin serves the controller's health, metrics and debug pages: /healthz (alive),
// /readyz (informers synced, first configuration pushed, xDS serving), /metrics (Prometheus),
// /debug/model (every workload and service of the mesh), /debug/push (what was pushed, sent,
// ACKed and NACKed per node agent), /debug/node?name=<node> (what one node receives),
// /debug/waypoints (each waypoint's configuration version and, per waypoint pod, what was
// pushed, sent, ACKed and NACKed) and /debug/warnings (problems found in the cluster's
// objects, each with its fix).
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/weftmesh/weft/controller/translate"
	"github.com/weftmesh/weft/controller/xds"
)

// DefaultAddr is where the admin server listens (istiod's monitoring port).
const DefaultAddr = ":15014"

// Options configures the admin server.
type Options struct {
	Addr     string
	XDS      *xds.Server
	Gatherer prometheus.Gatherer
	// Ready reports why the controller is not ready, nil when it is.
	Ready  func() error
	Logger *slog.Logger
}

// Run serves until ctx is done.
func Run(ctx context.Context, o Options) error {
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := o.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /debug/push", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, o.XDS.Statuses()) })
	// The waypoints: the version of each one's configuration, and where each pod stands.
	mux.HandleFunc("GET /debug/waypoints", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"configs": o.XDS.WaypointConfigs(), "pods": o.XDS.WaypointStatuses()})
	})
	mux.HandleFunc("GET /debug/model", func(w http.ResponseWriter, _ *http.Request) {
		m := o.XDS.Mesh()
		if m == nil {
			http.Error(w, "nothing pushed yet", http.StatusServiceUnavailable)
			return
		}
		writeResources(w, m.Resources)
	})
	mux.HandleFunc("GET /debug/node", func(w http.ResponseWriter, r *http.Request) {
		m := o.XDS.Mesh()
		if m == nil {
			http.Error(w, "nothing pushed yet", http.StatusServiceUnavailable)
			return
		}
		name := r.URL.Query().Get("name")
		if name == "" {
			http.Error(w, "name the node: /debug/node?name=<node>", http.StatusBadRequest)
			return
		}
		writeResources(w, m.ForNode(name))
	})
	mux.HandleFunc("GET /debug/warnings", func(w http.ResponseWriter, _ *http.Request) {
		out := []string{}
		if m := o.XDS.Mesh(); m != nil {
			for _, e := range m.Warnings {
				out = append(out, e.Error())
			}
		}
		writeJSON(w, out)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeResources writes resources as a JSON object keyed by name, with their versions.
func writeResources(w http.ResponseWriter, rs map[string]translate.Resource) {
	type entry struct {
		Version  string          `json:"version"`
		Resource json.RawMessage `json:"resource"`
	}
	out := make(map[string]entry, len(rs))
	for name, r := range rs {
		b, err := protojson.Marshal(r.Address)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		out[name] = entry{Version: r.Version, Resource: b}
	}
	writeJSON(w, out)
}

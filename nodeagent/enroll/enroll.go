// Package enroll tells the node agent about pod sandboxes: the chained CNI plugin reports each new
// or deleted pod network namespace over a unix socket (Notify → Server), and Scan finds the
// namespaces of pods that already ran when the agent started, by their addresses.
package enroll

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// DefaultSocket is where the agent listens for the CNI plugin, on the node's filesystem.
const DefaultSocket = "/var/run/weft/cni.sock"

// Event is a pod sandbox the agent learns about.
type Event struct {
	Op          Op           `json:"op"`
	ContainerID string       `json:"containerID"`
	Namespace   string       `json:"namespace"`
	Name        string       `json:"name"`
	UID         string       `json:"uid"`
	NetNS       string       `json:"netns"` // path of the network namespace
	IPs         []netip.Addr `json:"ips"`
}

// Op says what happened to a sandbox.
type Op string

const (
	OpAdd Op = "add"
	OpDel Op = "del"
)

// Server receives events from the CNI plugin and hands each to Handle; the plugin sees Handle's
// error, so pod creation waits until the agent has enrolled the pod (or decided not to).
type Server struct {
	Path   string
	Handle func(ctx context.Context, ev Event) error
	Logger *slog.Logger
}

// Serve listens on s.Path (replacing a stale socket) until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o755); err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	if err := os.Remove(s.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("enroll: %w", err)
	}
	ln, err := net.Listen("unix", s.Path)
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/pods", s.serveEvent)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("enroll: %w", err)
	}
	return nil
}

func (s *Server) serveEvent(w http.ResponseWriter, r *http.Request) {
	var ev Event
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&ev); err != nil {
		http.Error(w, "enroll: bad event: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := s.Handle(r.Context(), ev); err != nil {
		if s.Logger != nil {
			s.Logger.Warn("cni event refused", "op", ev.Op, "pod", ev.Namespace+"/"+ev.Name, "err", err)
		}
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Notify sends ev to the agent's socket and returns the agent's verdict.
func Notify(ctx context.Context, socket string, ev Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://weft-agent/v1/pods", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("node agent at %s: %w", socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("node agent refused %s of %s/%s: %s", ev.Op, ev.Namespace, ev.Name, bytes.TrimSpace(msg))
	}
	return nil
}

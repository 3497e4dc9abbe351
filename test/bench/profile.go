package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// ProfileTarget is a mesh process whose pprof endpoints a Profiler reads.
type ProfileTarget struct {
	// Name names the process in file names, e.g. "agent@node-1" or "waypoint".
	Name string
	// Paths are the scenario paths (Scenario.Path) the process is on, e.g. PathAgents and
	// PathWaypoint for a node agent.
	Paths []string
	// BaseURL is the admin endpoint, e.g. http://127.0.0.1:15000 (loopback in the process's
	// network namespace).
	BaseURL string
	// Dial connects inside the process's network namespace.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Profiler collects Go CPU and allocation profiles of the mesh's processes while a repetition
// runs: pprof's /debug/pprof/profile and /debug/pprof/allocs with ?seconds=, so the allocation
// profile holds only what was allocated during the window. Each profile is written to
// Dir/<scenario>-<workload>-<target>.{cpu,allocs}.pprof, to be read with `go tool pprof`.
type Profiler struct {
	Dir     string
	Targets []ProfileTarget
}

// profileSeconds is the window of a bulk workload's profiles; an HTTP or gRPC workload's is its
// duration.
const profileSeconds = 3

// Start begins profiling the targets on sc's path for the repetition of w that is about to run
// for d (a bulk transfer: for profileSeconds). stop waits for the profiles and writes them; it
// returns the errors of the targets that failed.
func (p *Profiler) Start(ctx context.Context, sc Scenario, w Workload, d time.Duration) (stop func() error) {
	seconds := max(1, int(d/time.Second))
	if w.Kind == Bulk {
		seconds = profileSeconds
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, t := range p.Targets {
		if !slices.Contains(t.Paths, sc.Path) {
			continue
		}
		for _, kind := range []struct{ endpoint, suffix string }{{"profile", "cpu"}, {"allocs", "allocs"}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := fmt.Sprintf("%s-%s-%s.%s.pprof", sc.Name, w.ID, t.Name, kind.suffix)
				url := fmt.Sprintf("%s/debug/pprof/%s?seconds=%d", t.BaseURL, kind.endpoint, seconds)
				if err := p.fetch(ctx, t, url, filepath.Join(p.Dir, name)); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("profile %s: %w", name, err))
					mu.Unlock()
				}
			}()
		}
	}
	return func() error {
		wg.Wait()
		return errors.Join(errs...)
	}
}

func (p *Profiler) fetch(ctx context.Context, t ProfileTarget, url, file string) error {
	client := &http.Client{Transport: &http.Transport{DialContext: t.Dial}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	if err := os.MkdirAll(p.Dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

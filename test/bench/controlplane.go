package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// PeerPods are the pods of one peer scenario.
type PeerPods struct {
	Scenario string  `json:"scenario"`
	Pods     []Agent `json:"pods"`
}

// ControlPlane is what the benchmark report shows of a weft-scale run (package
// test/bench/scale, its JSON file scale-<ID>.json): the size of the cluster it simulated and
// the change-to-ACK propagation per kind of change. It is read from the file, not recomputed.
type ControlPlane struct {
	File     string `json:"file"`
	ID       string `json:"id"`
	Mode     string `json:"mode"`
	Services int    `json:"services"`
	Pods     int    `json:"pods"`
	Agents   int    `json:"agents"`
	// SyncP50Ms and SyncP99Ms are the initial full sync of the agents.
	SyncP50Ms float64 `json:"syncP50Ms"`
	SyncP99Ms float64 `json:"syncP99Ms"`
	// ControllerPeakRSSMiB and ControllerCPUSeconds are the controller's over the whole run.
	ControllerPeakRSSMiB float64              `json:"controllerPeakRssMiB"`
	ControllerCPUSeconds float64              `json:"controllerCpuSeconds"`
	Changes              []ControlPlaneChange `json:"changes"`
	Env                  map[string]any       `json:"env,omitempty"`
}

// ControlPlaneChange is the propagation of one kind of change: from the API write until the last
// (and the first) affected agent applied and ACKed it.
type ControlPlaneChange struct {
	Kind      string  `json:"kind"`
	N         int     `json:"n"`
	Failed    int     `json:"failed"`
	Affected  float64 `json:"affectedMedian"`
	LastP50Ms float64 `json:"lastP50Ms"`
	LastP99Ms float64 `json:"lastP99Ms"`
	FirstP50  float64 `json:"firstP50Ms"`
}

// scaleFile is the part of weft-scale's JSON that ControlPlane takes.
type scaleFile struct {
	ID    string         `json:"id"`
	Mode  string         `json:"mode"`
	Env   map[string]any `json:"env"`
	Setup struct {
		Objects map[string]int `json:"objects"`
	} `json:"setup"`
	Plan struct {
		Size struct {
			Nodes int `json:"nodes"`
		} `json:"size"`
	} `json:"plan"`
	Sync struct {
		P50Seconds float64 `json:"p50Seconds"`
		P99Seconds float64 `json:"p99Seconds"`
	} `json:"sync"`
	Controller struct {
		PeakRSSMiB float64 `json:"peakRssMiB"`
		CPUSeconds float64 `json:"cpuSeconds"`
	} `json:"controller"`
	Changes []struct {
		Kind     string `json:"kind"`
		N        int    `json:"n"`
		Failed   int    `json:"failed"`
		Affected struct {
			Median float64 `json:"median"`
		} `json:"affected"`
		LastMs struct {
			P50 float64 `json:"p50"`
			P99 float64 `json:"p99"`
		} `json:"lastMs"`
		FirstMs struct {
			P50 float64 `json:"p50"`
		} `json:"firstMs"`
	} `json:"changes"`
}

// ParseControlPlane reads the control-plane figures of a weft-scale result.
func ParseControlPlane(b []byte, file string) (*ControlPlane, error) {
	var s scaleFile
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("control plane %s: %w", file, err)
	}
	if s.ID == "" || len(s.Changes) == 0 {
		return nil, fmt.Errorf("control plane %s: not a weft-scale result (no id or no changes)", file)
	}
	cp := &ControlPlane{File: file, ID: s.ID, Mode: s.Mode, Services: s.Setup.Objects["Service"], Pods: s.Setup.Objects["Pod"],
		Agents: s.Plan.Size.Nodes, SyncP50Ms: 1000 * s.Sync.P50Seconds, SyncP99Ms: 1000 * s.Sync.P99Seconds,
		ControllerPeakRSSMiB: s.Controller.PeakRSSMiB, ControllerCPUSeconds: s.Controller.CPUSeconds, Env: s.Env}
	for _, c := range s.Changes {
		cp.Changes = append(cp.Changes, ControlPlaneChange{Kind: c.Kind, N: c.N, Failed: c.Failed, Affected: c.Affected.Median,
			LastP50Ms: c.LastMs.P50, LastP99Ms: c.LastMs.P99, FirstP50: c.FirstMs.P50})
	}
	return cp, nil
}

// ReadControlPlane reads a weft-scale result: file, or when file is "" the newest scale-*.json
// in dir (by its name, which is its UTC start time).
func ReadControlPlane(file, dir string) (*ControlPlane, error) {
	if file == "" {
		matches, err := filepath.Glob(filepath.Join(dir, "scale-*.json"))
		if err != nil {
			return nil, fmt.Errorf("control plane: %w", err)
		}
		if len(matches) == 0 {
			return nil, errors.New("control plane: no scale-*.json in " + dir + ": run weft-scale (make bench runs it first)")
		}
		slices.Sort(matches)
		file = matches[len(matches)-1]
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	return ParseControlPlane(b, filepath.Base(file))
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeExec answers fortio with a recorded result and bulk with a canned report, and records
// every command line.
type fakeExec struct {
	mu     sync.Mutex
	calls  [][]string
	fortio []byte
	bulk   []byte
	fail   func(argv []string) error // nil: never
}

func (f *fakeExec) Exec(ctx context.Context, ns, pod string, argv ...string) ([]byte, error) {
	f.mu.Lock()
	f.calls = append(f.calls, append([]string{ns + "/" + pod}, argv...))
	f.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		return nil, errors.New("exec without a deadline")
	}
	if f.fail != nil {
		if err := f.fail(argv); err != nil {
			return []byte("boom"), err
		}
	}
	if argv[0] == taskset { // pinned: taskset -c LIST argv...
		argv = argv[3:]
	}
	switch argv[0] {
	case "/bin/fortio":
		return append([]byte(`{"ts":1,"level":"info","msg":"Starting"}`+"\n"), f.fortio...), nil
	case "/bin/bulk":
		return f.bulk, nil
	}
	return nil, fmt.Errorf("unexpected binary %s", argv[0])
}

const bulkReport = `{
  "to": "198.18.2.5:5001",
  "streams": [
    {"stream": 0, "bytes": 1000000000, "seconds": 1.6, "gbps": 5.0, "received_bytes": 1000000000, "match": true}
  ],
  "bytes": 1000000000,
  "seconds": 1.6,
  "gbps": 5.0,
  "match": true
}
bulk send to 198.18.2.5:5001: 1 streams, 1.0 GB in 1.600s, 5.000 Gbit/s total, digest match
{"time":"2026-11-21T22:40:00Z","level":"WARN","msg":"late log line"}
`

var testTarget = Target{
	Namespace: "bench", ClientPod: "bench-client-0", ClientNode: "node-1", ServerNode: "node-2",
	HTTPURL: "http://198.18.2.4:8080/", BulkAddr: "198.18.2.5:5001", GRPCAddr: "198.18.2.4:9090",
}

func TestRunnerRun(t *testing.T) {
	plan, err := NewPlan(Full)
	if err != nil {
		t.Fatal(err)
	}
	plan.Pause = 0
	fe := &fakeExec{fortio: readTestdata(t, "fortio-1.75-keepalive.json"), bulk: []byte(bulkReport)}
	var lines []string
	r := &Runner{Exec: fe, Fortio: "/bin/fortio", Bulk: "/bin/bulk", Plan: plan,
		Progress: func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }}
	res := r.Run(t.Context(), Scenario{Name: BaselineScenario, Target: testTarget})[0]

	if len(res.Results) != len(plan.Workloads) {
		t.Fatalf("%d results for %d workloads", len(res.Results), len(plan.Workloads))
	}
	// one warm-up and three repetitions per workload
	if want := len(plan.Workloads) * (1 + plan.Repetitions); len(fe.calls) != want {
		t.Errorf("%d execs, want %d", len(fe.calls), want)
	}
	if want := len(plan.Workloads) * plan.Repetitions; len(lines) != want {
		t.Errorf("%d progress lines, want %d", len(lines), want)
	}
	for _, c := range fe.calls {
		if c[0] != "bench/bench-client-0" {
			t.Errorf("exec in %s, want the client pod", c[0])
		}
	}
	if r.FortioVersion() != "1.75.3" {
		t.Errorf("fortio version %q", r.FortioVersion())
	}
	for _, res := range res.Results {
		if res.Error != "" {
			t.Errorf("%s: %s", res.Workload, res.Error)
		}
		if len(res.Samples) != plan.Repetitions {
			t.Errorf("%s: %d samples", res.Workload, len(res.Samples))
		}
	}
	h := res.Results[0]
	if st := h.Summary[P99]; st.N != 3 || !approx(st.Median, 1.4160000000000125) {
		t.Errorf("http p99 summary %+v", st)
	}
	// the recorded result reached 984 of 1000 rps: fine; at 3200 rps it is a note
	if len(h.Notes) != 0 {
		t.Errorf("notes at 1000 rps: %v", h.Notes)
	}
	if n := res.Results[1].Notes; len(n) != 3 || !strings.Contains(n[0], "984 of 3200 rps") {
		t.Errorf("notes at 3200 rps: %v", n)
	}
	if g := res.Results[4]; g.Workload != "grpc-1000rps" || g.Summary[P99].N != 3 {
		t.Errorf("gRPC result %s: p99 summary %+v", g.Workload, g.Summary[P99])
	}
	b := res.Results[5]
	if st := b.Summary[Gbps]; st.N != 3 || st.Median != 5.0 {
		t.Errorf("bulk summary %+v", st)
	}
}

func TestRunnerFailures(t *testing.T) {
	plan, err := NewPlan(Quick)
	if err != nil {
		t.Fatal(err)
	}
	plan.Pause = 0
	tests := []struct {
		name      string
		fail      func(argv []string) error
		fortio    string
		wantError map[string]string // workload → substring of Result.Error
	}{
		{
			name: "bulk receiver down",
			fail: func(argv []string) error {
				if argv[0] == "/bin/bulk" {
					return errors.New("exit status 1")
				}
				return nil
			},
			wantError: map[string]string{"tcp-1stream": "warm-up: bulk: exit status 1", "tcp-4streams": "warm-up: bulk"},
		},
		{
			name: "keep-alive repetition fails",
			fail: func(argv []string) error {
				if slices.Contains(argv, "-labels") && strings.HasSuffix(argv[slices.Index(argv, "-labels")+1], "http-max 1") {
					return errors.New("signal: killed")
				}
				return nil
			},
			wantError: map[string]string{"http-max": "repetition 1: fortio: signal: killed"},
		},
		{
			name:      "fortio prints no JSON",
			fortio:    "Aborting because of lookup failure\n",
			wantError: map[string]string{"http-1000rps": "no JSON", "http-3200rps": "no JSON", "http-max": "no JSON", "http-newconn": "no JSON", "grpc-1000rps": "no JSON"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := &fakeExec{fortio: readTestdata(t, "fortio-1.75-keepalive.json"), bulk: []byte(bulkReport), fail: tt.fail}
			if tt.fortio != "" {
				fe.fortio = []byte(tt.fortio)
			}
			r := &Runner{Exec: fe, Fortio: "/bin/fortio", Bulk: "/bin/bulk", Plan: plan}
			res := r.Run(t.Context(), Scenario{Name: BaselineScenario, Target: testTarget})[0]
			for _, res := range res.Results {
				want, failed := tt.wantError[res.Workload]
				switch {
				case failed && !strings.Contains(res.Error, want):
					t.Errorf("%s: error %q, want %q", res.Workload, res.Error, want)
				case !failed && res.Error != "":
					t.Errorf("%s: unexpected error %q", res.Workload, res.Error)
				}
			}
		})
	}
}

func TestRunnerCanceled(t *testing.T) {
	plan, err := NewPlan(Quick)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	fe := &fakeExec{fortio: readTestdata(t, "fortio-1.75-keepalive.json"), bulk: []byte(bulkReport)}
	r := &Runner{Exec: fe, Fortio: "/bin/fortio", Bulk: "/bin/bulk", Plan: plan}
	start := time.Now()
	res := r.Run(ctx, Scenario{Name: BaselineScenario, Target: testTarget})[0]
	if len(fe.calls) != 0 || time.Since(start) > time.Second {
		t.Errorf("canceled run executed %d commands in %s", len(fe.calls), time.Since(start))
	}
	for _, res := range res.Results {
		if !strings.Contains(res.Error, "canceled") {
			t.Errorf("%s: error %q", res.Workload, res.Error)
		}
	}
}

func TestFortioArgs(t *testing.T) {
	tests := []struct {
		name     string
		w        Workload
		want     []string // must appear, in order, as consecutive arguments
		wantNot  []string
		wantLast string
	}{
		{
			name:     "fixed rate keep-alive",
			w:        Workload{Kind: HTTP, QPS: 1000, Connections: 16, KeepAlive: true, ResponseBytes: 1024},
			want:     []string{"load", "-json", "-", "-qps", "1000", "-c", "16", "-t", "15s", "-r", "1e-05", "-p", "50,90,99,99.9"},
			wantNot:  []string{"-keepalive=false"},
			wantLast: "http://198.18.2.4:8080/?size=1024",
		},
		{
			name:     "max rate",
			w:        Workload{Kind: HTTP, QPS: 0, Connections: 16, KeepAlive: true, ResponseBytes: 1024},
			want:     []string{"-qps", "0"},
			wantNot:  []string{"-uniform", "-keepalive=false"},
			wantLast: "http://198.18.2.4:8080/?size=1024",
		},
		{
			name:     "new connection per request",
			w:        Workload{Kind: HTTP, QPS: 0, Connections: 16, KeepAlive: false},
			want:     []string{"-keepalive=false"},
			wantNot:  []string{"-uniform"},
			wantLast: "http://198.18.2.4:8080/",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			argv, err := FortioArgs("/bin/fortio", testTarget, tt.w, 15*time.Second, 0.00001, "no-mesh x 1")
			if err != nil {
				t.Fatal(err)
			}
			joined := strings.Join(argv, "\x00")
			if !strings.Contains(joined, strings.Join(tt.want, "\x00")) {
				t.Errorf("argv %q lacks %q", argv, tt.want)
			}
			for _, a := range tt.wantNot {
				if slices.Contains(argv, a) {
					t.Errorf("argv %q has %q", argv, a)
				}
			}
			if tt.w.QPS > 0 && !slices.Contains(argv, "-uniform") {
				t.Errorf("fixed rate without -uniform: %q", argv)
			}
			if argv[0] != "/bin/fortio" || argv[len(argv)-1] != tt.wantLast {
				t.Errorf("argv %q", argv)
			}
		})
	}
	if _, err := FortioArgs("/bin/fortio", Target{HTTPURL: "::bad"}, tests[0].w, time.Second, 0.00001, "x"); err == nil {
		t.Error("bad URL accepted")
	}
}

func TestBulkArgs(t *testing.T) {
	got := BulkArgs("/bin/bulk", testTarget, Workload{Kind: Bulk, Streams: 4, StreamBytes: "1G"})
	want := []string{"/bin/bulk", "send", "-to", "198.18.2.5:5001", "-bytes", "1G", "-streams", "4", "-timeout", "2m0s", "-json"}
	if !slices.Equal(got, want) {
		t.Errorf("BulkArgs = %q, want %q", got, want)
	}
}

func TestParseBulk(t *testing.T) {
	r, err := ParseBulk([]byte(`{"time":"x","level":"INFO","msg":"early"}` + "\n" + bulkReport))
	if err != nil {
		t.Fatal(err)
	}
	s := BulkSample(r)
	if s[Gbps] != 5 || s[Bytes] != 1e9 || s[Errors] != 0 {
		t.Errorf("sample %v", s)
	}
	mismatch := strings.Replace(bulkReport, `"match": true}`, `"match": false, "error": "reset"}`, 1)
	r, err = ParseBulk([]byte(mismatch))
	if err != nil {
		t.Fatal(err)
	}
	if s := BulkSample(r); s[Errors] != 1 {
		t.Errorf("mismatched stream: sample %v", s)
	}
	if _, err := ParseBulk([]byte("{\n  \"to\": \"x\"\n}\n")); err == nil {
		t.Error("report without streams accepted")
	}
}

// fakeMeter returns fixed agent figures for every window and counts the windows.
type fakeMeter struct {
	started, stopped int
	startErr         error
	stopErr          error
}

func (m *fakeMeter) Start() (func() (Sample, error), error) {
	if m.startErr != nil {
		return nil, m.startErr
	}
	m.started++
	return func() (Sample, error) {
		m.stopped++
		if m.stopErr != nil {
			return nil, m.stopErr
		}
		return Sample{AgentCPU: 1.5, AgentVCPU: 0.1, AgentRSS: 40, NodeMetric(AgentRSS, "node-1"): 18}, nil
	}, nil
}

// TestRunnerInterleaves checks the order of a two-scenario run: per workload and repetition,
// each scenario is entered (only when the path changes), warmed up and measured.
func TestRunnerInterleaves(t *testing.T) {
	plan, err := NewPlan(Full)
	if err != nil {
		t.Fatal(err)
	}
	plan.Pause = 0
	plan.Workloads = plan.Workloads[:2] // http-1000rps, http-3200rps
	fe := &fakeExec{fortio: readTestdata(t, "fortio-1.75-keepalive.json"), bulk: []byte(bulkReport)}
	var events []string
	fe.fail = func(argv []string) error {
		label := "warm-up"
		if i := slices.Index(argv, "-labels"); i >= 0 && argv[i+1] != "warmup" {
			label = argv[i+1]
		}
		events = append(events, label)
		return nil
	}
	enter := func(name string) func(context.Context) error {
		return func(context.Context) error {
			events = append(events, "enter "+name)
			return nil
		}
	}
	meter := &fakeMeter{}
	r := &Runner{Exec: fe, Fortio: "/bin/fortio", Bulk: "/bin/bulk", Plan: plan, Meter: meter}
	got := r.Run(t.Context(),
		Scenario{Name: BaselineScenario, Target: testTarget, Enter: enter(BaselineScenario)},
		Scenario{Name: "weft-l4", Target: testTarget, Enter: enter("weft-l4")})

	var want []string
	for _, w := range []string{"http-1000rps", "http-3200rps"} {
		for rep := 1; rep <= 3; rep++ {
			for _, sc := range []string{BaselineScenario, "weft-l4"} {
				want = append(want, "enter "+sc, "warm-up", fmt.Sprintf("%s %s %d", sc, w, rep))
			}
		}
	}
	if !slices.Equal(events, want) {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(events, "\n"), strings.Join(want, "\n"))
	}
	if len(got) != 2 || got[0].Name != BaselineScenario || got[1].Name != "weft-l4" {
		t.Fatalf("scenarios %+v", got)
	}
	if meter.started != 12 || meter.stopped != 12 {
		t.Errorf("meter started %d and stopped %d times, want 12 (repetitions only)", meter.started, meter.stopped)
	}
	for _, sc := range got {
		for _, res := range sc.Results {
			if res.Error != "" || len(res.Samples) != 3 {
				t.Errorf("%s/%s: %d samples, error %q", sc.Name, res.Workload, len(res.Samples), res.Error)
			}
			// 1.5 CPU-seconds over the recorded result's requests
			if st := res.Summary[AgentVCPUPerKRPS]; st.N != 3 || !approx(st.Median, 1.5*1000/res.Samples[0][Requests]) {
				t.Errorf("%s/%s: vCPU per 1000 rps %+v", sc.Name, res.Workload, st)
			}
			if st := res.Summary[NodeMetric(AgentRSS, "node-1")]; st.Median != 18 {
				t.Errorf("%s/%s: node-1 RSS %+v", sc.Name, res.Workload, st)
			}
		}
	}
}

func TestRunnerEnterAndMeterFailures(t *testing.T) {
	plan, err := NewPlan(Quick)
	if err != nil {
		t.Fatal(err)
	}
	plan.Pause = 0
	tests := []struct {
		name      string
		enter     func(workload string) error // of weft-l4, told the workload it is entered for
		meter     *fakeMeter
		wantError map[string]string // "scenario/workload" → substring of Result.Error
		wantNote  string            // in every result's notes
	}{
		{
			name: "weft-l4 cannot be entered for one workload",
			enter: func(w string) error {
				if w == "http-max" {
					return errors.New("no mTLS connection counted")
				}
				return nil
			},
			meter:     &fakeMeter{},
			wantError: map[string]string{"weft-l4/http-max": "repetition 1: enter weft-l4: no mTLS connection counted"},
		},
		{
			name:      "weft-l4 never",
			enter:     func(string) error { return errors.New("agents down") },
			meter:     &fakeMeter{},
			wantError: map[string]string{"weft-l4/*": "enter weft-l4: agents down"},
		},
		{
			name:     "meter cannot start",
			enter:    func(string) error { return nil },
			meter:    &fakeMeter{startErr: errors.New("agent meter: node-1: cgroup CPU: no such file")},
			wantNote: "rep 1: no resource accounting: agent meter: node-1",
		},
		{
			name:     "meter cannot stop",
			enter:    func(string) error { return nil },
			meter:    &fakeMeter{stopErr: errors.New("went back")},
			wantNote: "rep 1: no resource accounting: went back",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := &fakeExec{fortio: readTestdata(t, "fortio-1.75-keepalive.json"), bulk: []byte(bulkReport)}
			var current string // the workload about to be measured, from the runner's order
			wi := 0
			baseEnter := func(context.Context) error {
				current = plan.Workloads[wi].ID
				wi++
				return nil
			}
			r := &Runner{Exec: fe, Fortio: "/bin/fortio", Bulk: "/bin/bulk", Plan: plan, Meter: tt.meter}
			got := r.Run(t.Context(),
				Scenario{Name: BaselineScenario, Target: testTarget, Enter: baseEnter},
				Scenario{Name: "weft-l4", Target: testTarget, Enter: func(context.Context) error { return tt.enter(current) }})
			for _, sc := range got {
				if len(sc.Results) != len(plan.Workloads) {
					t.Fatalf("%s: %d results", sc.Name, len(sc.Results))
				}
				for _, res := range sc.Results {
					want, failed := tt.wantError[sc.Name+"/"+res.Workload]
					if w, ok := tt.wantError[sc.Name+"/*"]; ok {
						want, failed = w, true
					}
					switch {
					case failed && !strings.Contains(res.Error, want):
						t.Errorf("%s/%s: error %q, want %q", sc.Name, res.Workload, res.Error, want)
					case !failed && res.Error != "":
						t.Errorf("%s/%s: unexpected error %q", sc.Name, res.Workload, res.Error)
					case !failed && len(res.Samples) != 1:
						t.Errorf("%s/%s: %d samples", sc.Name, res.Workload, len(res.Samples))
					}
					if tt.wantNote != "" && !slices.ContainsFunc(res.Notes, func(n string) bool { return strings.Contains(n, tt.wantNote) }) {
						t.Errorf("%s/%s: notes %q lack %q", sc.Name, res.Workload, res.Notes, tt.wantNote)
					}
					if tt.wantNote != "" {
						if _, ok := res.Summary[AgentCPU]; ok {
							t.Errorf("%s/%s: agent figures without accounting", sc.Name, res.Workload)
						}
					}
				}
			}
		})
	}
}

func TestRunnerPinsLoad(t *testing.T) {
	plan, err := NewPlan(Quick)
	if err != nil {
		t.Fatal(err)
	}
	for _, cpus := range []string{"", "0"} {
		plan.LoadCPUs = cpus
		fe := &fakeExec{fortio: readTestdata(t, "fortio-1.75-keepalive.json"), bulk: []byte(bulkReport)}
		r := &Runner{Exec: fe, Fortio: "/bin/fortio", Bulk: "/bin/bulk", Plan: plan}
		r.Run(context.Background(), Scenario{Name: BaselineScenario, Target: testTarget})
		if len(fe.calls) == 0 {
			t.Fatal("no load generator ran")
		}
		for _, c := range fe.calls {
			pinned := c[1] == taskset && c[2] == "-c" && c[3] == cpus
			if pinned != (cpus != "") {
				t.Errorf("LoadCPUs %q: command %q", cpus, c[1:])
			}
		}
	}
}

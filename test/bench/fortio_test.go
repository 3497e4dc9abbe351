package bench

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The testdata files are real results of fortio against the echo app on loopback, with 1.75.3
// (the version the benchmark was designed with; built without its grol scripting package, which
// the module proxy refuses) and 1.68.0 (the version the harness builds now):
//
//	fortio load -json - -qps 1000 -uniform -c 16 -t 1s -r 0.00001 -p 50,90,99,99.9 \
//	  -labels "no-mesh http-1000rps" "http://127.0.0.1:18181/?size=1024"   (fortio-1.*-keepalive.json)
//	fortio load -json - -qps 0 -keepalive=false -c 16 -t 1s -r 0.00001 -p 50,90,99,99.9 \
//	  -labels "no-mesh http-newconn" "http://127.0.0.1:18181/?size=1024"   (fortio-1.75-newconn.json)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseFortio(t *testing.T) {
	tests := []struct {
		file      string
		version   string
		labels    string
		threads   int
		keepAlive bool
		count     int64
		sockets   int64
		qps       float64
		// fortio's own percentiles, in seconds
		p50, p90, p99, p999 float64
	}{
		{
			file: "fortio-1.75-keepalive.json", version: "1.75.3", labels: "no-mesh http-1000rps", threads: 16, keepAlive: true,
			count: 992, sockets: 16, qps: 984.086632669939,
			p50: 0.00011905511811023624, p90: 0.00019445454545454546, p99: 0.0014160000000000125, p999: 0.008006971047999994,
		},
		{
			file: "fortio-1.75-newconn.json", version: "1.75.3", labels: "no-mesh http-newconn", threads: 16, keepAlive: false,
			count: 9927, sockets: 9943, qps: 9917.16215530761,
			p50: 0.001464470391993328, p90: 0.00259343137254902, p99: 0.0046354255319148935, p999: 0.009018250000000132,
		},
		{
			file: "fortio-1.68-keepalive.json", version: "1.68.0", labels: "no-mesh http-1000rps", threads: 16, keepAlive: true,
			count: 992, sockets: 16, qps: 984.0962730987472,
			p50: 0.00015238636363636366, p90: 0.0002273684210526316, p99: 0.0002984666666666667, p999: 0.0004171072720000011,
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			r, err := ParseFortio(readTestdata(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if r.Labels != tt.labels || r.NumThreads != tt.threads || r.DisableKeepAlive == tt.keepAlive {
				t.Errorf("labels %q threads %d disableKeepAlive %v", r.Labels, r.NumThreads, r.DisableKeepAlive)
			}
			if r.Version != tt.version || r.RunType != "HTTP" {
				t.Errorf("version %q run type %q", r.Version, r.RunType)
			}
			s := r.Sample()
			want := Sample{
				P50: 1000 * tt.p50, P90: 1000 * tt.p90, P99: 1000 * tt.p99, P999: 1000 * tt.p999,
				RPS: tt.qps, Requests: float64(tt.count), Errors: 0, Sockets: float64(tt.sockets),
			}
			for m, v := range want {
				if !approx(s[m], v) {
					t.Errorf("%s = %v, want %v", m, s[m], v)
				}
			}
			if len(s) != len(want) {
				t.Errorf("sample has %d metrics, want %d: %v", len(s), len(want), s)
			}
		})
	}
}

// TestParseFortioCombinedOutput parses the JSON out of what Cluster.Exec returns: fortio's
// stderr (JSON log lines, text summary) and stdout in one stream.
func TestParseFortioCombinedOutput(t *testing.T) {
	body := readTestdata(t, "fortio-1.75-keepalive.json")
	pre := `{"ts":1795300195.19,"level":"info","msg":"Starting","command":"Φορτίο"}
Fortio 1.75.3 running at 1000 queries per second, 2->2 procs, for 1s: http://198.18.2.3:8080/?size=1024
{"ts":1795300197.2,"level":"warn","msg":"something"}
All done 992 calls (plus 16 warmup) 0.170 ms avg, 984.1 qps
`
	post := "Successfully wrote 8430 bytes of Json data to stdout\n"
	tests := []struct {
		name    string
		out     string
		wantErr string
	}{
		{name: "json only", out: string(body)},
		{name: "logs around", out: pre + string(body) + post},
		{name: "no json", out: pre + post, wantErr: "no JSON object"},
		{name: "empty", out: "", wantErr: "no JSON object"},
		{name: "truncated", out: pre + string(body[:len(body)/2]), wantErr: "decode"},
		{name: "no calls", out: "{\n  \"RunType\": \"HTTP\"\n}\n", wantErr: "no calls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseFortio([]byte(tt.out))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.DurationHistogram.Count != 992 {
				t.Errorf("count %d", r.DurationHistogram.Count)
			}
		})
	}
}

// TestHistogramPercentile checks that the interpolation over the histogram buckets gives fortio's
// own percentiles, so percentiles fortio was not asked for come out the same way.
func TestHistogramPercentile(t *testing.T) {
	for _, file := range []string{"fortio-1.75-keepalive.json", "fortio-1.75-newconn.json", "fortio-1.68-keepalive.json"} {
		t.Run(file, func(t *testing.T) {
			r, err := ParseFortio(readTestdata(t, file))
			if err != nil {
				t.Fatal(err)
			}
			h := r.DurationHistogram
			if len(h.Percentiles) != 4 {
				t.Fatalf("want 4 recorded percentiles, got %v", h.Percentiles)
			}
			for _, fp := range h.Percentiles {
				if got := h.calcPercentile(fp.Percentile); !approx(got, fp.Value) {
					t.Errorf("p%g = %v, fortio says %v", fp.Percentile, got, fp.Value)
				}
			}
			if got := h.Percentile(100); got != h.Max {
				t.Errorf("p100 = %v, want max %v", got, h.Max)
			}
			if got := h.Percentile(0); got != h.Min {
				t.Errorf("p0 = %v, want min %v", got, h.Min)
			}
			prev := 0.0
			for p := 1.0; p < 100; p += 1 {
				v := h.Percentile(p)
				if v < prev || v < h.Min || v > h.Max {
					t.Fatalf("p%g = %v not monotonic within [%v, %v] (previous %v)", p, v, h.Min, h.Max, prev)
				}
				prev = v
			}
		})
	}
}

func TestHistogramPercentileEmpty(t *testing.T) {
	var h FortioHistogram
	if v := h.Percentile(99); !math.IsNaN(v) {
		t.Errorf("empty histogram p99 = %v, want NaN", v)
	}
}

func TestFortioErrors(t *testing.T) {
	tests := []struct {
		codes map[string]int64
		want  int64
	}{
		{map[string]int64{"200": 10}, 0},
		{map[string]int64{"200": 10, "-1": 2}, 2},
		{map[string]int64{"200": 10, "204": 1, "503": 3, "-1": 2}, 5},
		{map[string]int64{"301": 1, "bogus": 1}, 2},
		{nil, 0},
	}
	for _, tt := range tests {
		r := FortioResult{RetCodes: tt.codes}
		if got := r.Errors(); got != tt.want {
			t.Errorf("Errors(%v) = %d, want %d", tt.codes, got, tt.want)
		}
	}
}

func approx(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

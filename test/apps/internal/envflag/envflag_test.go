package envflag

import (
	"flag"
	"io"
	"slices"
	"testing"
	"time"
)

func newFS() (*flag.FlagSet, *string, *int, *time.Duration, *List) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	name := fs.String("name", "def", "")
	port := fs.Int("port", 8080, "")
	d := fs.Duration("timeout", time.Second, "")
	var calls List
	fs.Var(&calls, "call", "")
	return fs, name, port, d, &calls
}

func TestApply(t *testing.T) {
	bindings := map[string]string{"name": "NAME", "port": "PORT", "timeout": "TIMEOUT", "call": "CALL"}
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantName  string
		wantPort  int
		wantD     time.Duration
		wantCalls []string
		wantErr   bool
	}{
		{name: "defaults", wantName: "def", wantPort: 8080, wantD: time.Second},
		{name: "env only", env: map[string]string{"NAME": "books", "PORT": "9000", "TIMEOUT": "2s", "CALL": "http://a, http://b"},
			wantName: "books", wantPort: 9000, wantD: 2 * time.Second, wantCalls: []string{"http://a", "http://b"}},
		{name: "flag wins", args: []string{"-name", "flag", "-call", "http://x"}, env: map[string]string{"NAME": "env", "CALL": "http://y"},
			wantName: "flag", wantPort: 8080, wantD: time.Second, wantCalls: []string{"http://x"}},
		{name: "empty env ignored", env: map[string]string{"NAME": ""}, wantName: "def", wantPort: 8080, wantD: time.Second},
		{name: "bad env", env: map[string]string{"PORT": "abc"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, name, port, d, calls := newFS()
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := Apply(fs, bindings, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if *name != tt.wantName || *port != tt.wantPort || *d != tt.wantD || !slices.Equal(*calls, tt.wantCalls) {
				t.Errorf("got name=%q port=%d d=%v calls=%v", *name, *port, *d, *calls)
			}
		})
	}
}

func TestApplyUnknownFlag(t *testing.T) {
	fs, _, _, _, _ := newFS()
	if err := Apply(fs, map[string]string{"nope": "NOPE"}, func(string) (string, bool) { return "", false }); err == nil {
		t.Fatal("want error for unknown flag")
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantPos  []string
		wantPort int
	}{
		{name: "flags after positional", args: []string{"http://x", "-port", "1"}, wantPos: []string{"http://x"}, wantPort: 1},
		{name: "mixed", args: []string{"-port", "2", "a", "b", "-name", "n"}, wantPos: []string{"a", "b"}, wantPort: 2},
		{name: "double dash", args: []string{"a", "--", "-port", "3"}, wantPos: []string{"a", "-port", "3"}, wantPort: 8080},
		{name: "none", args: nil, wantPos: nil, wantPort: 8080},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, _, port, _, _ := newFS()
			pos, err := ParseInterspersed(fs, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(pos, tt.wantPos) || *port != tt.wantPort {
				t.Errorf("pos=%q port=%d, want %q %d", pos, *port, tt.wantPos, tt.wantPort)
			}
		})
	}
}

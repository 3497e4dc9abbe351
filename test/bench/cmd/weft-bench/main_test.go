package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weftmesh/weft/test/bench"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    config
		wantErr bool
	}{
		{"make bench", []string{"-out", "bench-results"}, config{mode: bench.Full, outDir: "bench-results", timeout: 30 * time.Minute, tuneClient: true}, false},
		{"make bench QUICK=1", []string{"-quick", "-out", "bench-results"}, config{mode: bench.Quick, outDir: "bench-results", timeout: 6 * time.Minute, tuneClient: true}, false},
		{"explicit", []string{"-quick", "-out", "/tmp/b", "-timeout", "2m", "-tune-client=false"}, config{mode: bench.Quick, outDir: "/tmp/b", timeout: 2 * time.Minute}, false},
		{"stray argument", []string{"-quick", "now"}, config{}, true},
		{"unknown flag", []string{"-fast"}, config{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFlags(tt.args, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("config %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestIsWeftModule(t *testing.T) {
	tests := []struct {
		gomod string
		want  bool
	}{
		{"module github.com/weftmesh/weft\n\ngo 1.26.0\n", true},
		{"// comment\nmodule \"github.com/weftmesh/weft\"\n", true},
		{"module github.com/weftmesh/weft/sub\n", false},
		{"go 1.26.0\n", false},
	}
	for _, tt := range tests {
		if got := isWeftModule([]byte(tt.gomod)); got != tt.want {
			t.Errorf("isWeftModule(%q) = %v, want %v", tt.gomod, got, tt.want)
		}
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := repoRoot() // the test runs in test/bench/cmd/weft-bench
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "test", "bench", "cmd", "weft-bench", "main.go")); err != nil {
		t.Errorf("repo root %s: %v", root, err)
	}
}

func TestCopyBinary(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tool")
	if err := os.WriteFile(src, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	dst, err := copyBinary(src, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dst)
	if err != nil || fi.Mode().Perm()&0o111 == 0 || fi.Size() != 10 {
		t.Errorf("copy %s: %v %v", dst, fi, err)
	}
	if _, err := copyBinary("", t.TempDir()); err == nil {
		t.Error("empty source accepted")
	}
}

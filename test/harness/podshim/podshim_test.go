package podshim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, json, wantErr string
	}{
		{"ok", `{"argv":["/bin/true"],"env":["A=1"]}`, ""},
		{"relative binary", `{"argv":["true"]}`, "absolute path"},
		{"no argv", `{}`, "absolute path"},
		{"bad json", `{`, "unexpected end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".json")
			if err := os.WriteFile(p, []byte(tc.json), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(p)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Load = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestEnsureMountPointRecordsWhatItCreates(t *testing.T) {
	root := t.TempDir()
	record := filepath.Join(root, "created")
	existing := filepath.Join(root, "etc")
	if err := os.Mkdir(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ensureMountPoint(filepath.Join(existing, "coredns", "conf"), true, record); err != nil {
		t.Fatal(err)
	}
	if err := ensureMountPoint(filepath.Join(root, "run", "token"), false, record); err != nil {
		t.Fatal(err)
	}
	if err := ensureMountPoint(existing, true, record); err != nil { // exists: nothing recorded
		t.Fatal(err)
	}
	b, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(b))
	want := []string{
		filepath.Join(existing, "coredns", "conf"), filepath.Join(existing, "coredns"),
		filepath.Join(root, "run", "token"), filepath.Join(root, "run"),
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("recorded %v, want %v", got, want)
	}
	if fi, err := os.Stat(filepath.Join(root, "run", "token")); err != nil || fi.IsDir() {
		t.Errorf("file mount point: %v %v", fi, err)
	}
}

package controlplane

import (
	"slices"
	"strings"
	"testing"
)

// sampleKubeGoMod is an abridged Kubernetes go.mod with the shapes that
// matter: comments, a godebug line, direct and indirect require blocks, a
// single-line require, non-staging k8s.io modules and Kubernetes's own
// replace block pointing at ./staging.
const sampleKubeGoMod = `// This is a generated file. Do not edit directly.

module k8s.io/kubernetes

go 1.25.0

godebug default=go1.25

require (
	github.com/spf13/cobra v1.10.0
	go.etcd.io/etcd/client/v3 v3.6.5
	k8s.io/api v0.0.0
	k8s.io/apimachinery v0.0.0 // a comment
	k8s.io/klog/v2 v2.130.1
	k8s.io/kube-openapi v0.0.0-20250910181357-589584f1c912
	k8s.io/kubectl v0.0.0
	k8s.io/system-validators v1.12.1
)

require k8s.io/client-go v0.0.0

require (
	go.etcd.io/etcd/server/v3 v3.6.5 // indirect
	k8s.io/cri-client v0.0.0 // indirect
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/sample-controller => ./staging/src/k8s.io/sample-controller
)
`

func TestRenderBuildGoMod(t *testing.T) {
	mod, err := renderBuildGoMod([]byte(sampleKubeGoMod), "v1.35.4")
	if err != nil {
		t.Fatalf("renderBuildGoMod: %v", err)
	}
	if mod.etcdVersion != "v3.6.5" {
		t.Errorf("etcd version = %q, want v3.6.5", mod.etcdVersion)
	}
	got := string(mod.goMod)
	t.Logf("rendered go.mod:\n%s", got)

	wantReplace := []string{
		"k8s.io/api => k8s.io/api v0.35.4",
		"k8s.io/apimachinery => k8s.io/apimachinery v0.35.4",
		"k8s.io/client-go => k8s.io/client-go v0.35.4",
		"k8s.io/cri-client => k8s.io/cri-client v0.35.4",
		"k8s.io/kubectl => k8s.io/kubectl v0.35.4",
	}
	var gotReplace []string
	for line := range strings.Lines(got) {
		if strings.Contains(line, "=>") {
			gotReplace = append(gotReplace, strings.TrimSpace(line))
		}
	}
	if !slices.Equal(gotReplace, wantReplace) {
		t.Errorf("replace lines:\n got %q\nwant %q", gotReplace, wantReplace)
	}

	for _, want := range []string{
		"module " + buildModulePath + "\n",
		"go 1.25.0\n",
		"godebug default=go1.25\n",
		"\tk8s.io/kubernetes v1.35.4\n",
		"\tgo.etcd.io/etcd/server/v3 v3.6.5\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("rendered go.mod lacks %q", want)
		}
	}
	for _, unwanted := range []string{"staging", "sample-controller", "klog", "kube-openapi", "system-validators"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("rendered go.mod mentions %q", unwanted)
		}
	}

	// The rendered file must itself parse, with the expected requirements.
	parsed, err := parseGoMod(mod.goMod)
	if err != nil {
		t.Fatalf("parse rendered go.mod: %v", err)
	}
	wantReq := map[string]string{"k8s.io/kubernetes": "v1.35.4", etcdServerModule: "v3.6.5"}
	if len(parsed.requires) != len(wantReq) {
		t.Errorf("requires = %v, want %v", parsed.requires, wantReq)
	}
	for p, v := range wantReq {
		if parsed.requires[p] != v {
			t.Errorf("require %s = %q, want %q", p, parsed.requires[p], v)
		}
	}
}

func TestRenderBuildGoModErrors(t *testing.T) {
	tests := []struct {
		name    string
		goMod   string
		version string
		wantErr string
	}{
		{
			name:    "no etcd",
			goMod:   "module k8s.io/kubernetes\nrequire k8s.io/api v0.0.0\n",
			version: "v1.35.4",
			wantErr: "does not require go.etcd.io/etcd/server/v3",
		},
		{
			name:    "no staging modules",
			goMod:   "module k8s.io/kubernetes\nrequire go.etcd.io/etcd/server/v3 v3.6.5\n",
			version: "v1.35.4",
			wantErr: "no k8s.io module at v0.0.0",
		},
		{
			name:    "bad version",
			goMod:   sampleKubeGoMod,
			version: "1.35.4",
			wantErr: "unsupported kubernetes version",
		},
		{
			name:    "unterminated block",
			goMod:   "module m\nrequire (\n\tk8s.io/api v0.0.0\n",
			version: "v1.35.4",
			wantErr: "unterminated require block",
		},
		{
			name:    "malformed require",
			goMod:   "module m\nrequire k8s.io/api\n",
			version: "v1.35.4",
			wantErr: "malformed require",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := renderBuildGoMod([]byte(tt.goMod), tt.version)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestStagingVersion(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "v1.35.4", want: "v0.35.4"},
		{in: "v1.36.0-rc.1", want: "v0.36.0-rc.1"},
		{in: "v2.0.0", wantErr: true},
		{in: "v1.", wantErr: true},
	}
	for _, tt := range tests {
		got, err := stagingVersion(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("stagingVersion(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestRenderToolsGo(t *testing.T) {
	got := string(renderToolsGo([]string{"k8s.io/kubernetes/cmd/kubectl", etcdServerModule}))
	for _, want := range []string{
		"//go:build tools\n",
		"package tools\n",
		"\t_ \"go.etcd.io/etcd/server/v3\"\n\t_ \"k8s.io/kubernetes/cmd/kubectl\"\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("tools.go lacks %q:\n%s", want, got)
		}
	}
}

// Package golden is the plumbing of the controller's golden-file tests: it decodes a
// multi-document YAML file of Kubernetes, Istio and Gateway API objects, and compares a test's
// output with the file's .golden twin, rewriting it when asked (-update).
package golden

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	istioscheme "istio.io/client-go/pkg/clientset/versioned/scheme"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	gatewayscheme "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/scheme"
)

// Run calls render for every file matching pattern (e.g. "testdata/*.yaml"), each in its own
// subtest named after the file, with the file's objects, and compares what render returns
// with the file's twin ending in .golden; with update set, it writes the twin instead.
func Run(t *testing.T, pattern string, update bool, render func(t *testing.T, objs []runtime.Object) []byte) {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no test data matches %s: %v", pattern, err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), filepath.Ext(f)), func(t *testing.T) {
			Check(t, strings.TrimSuffix(f, filepath.Ext(f))+".golden", render(t, Objects(t, f)), update)
		})
	}
}

// Check compares got with the golden file, or writes it when update is set.
func Check(t *testing.T, golden string, got []byte, update bool) {
	t.Helper()
	if update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (run with -update and review the diff):\n%s", golden, got)
	}
}

// Objects decodes the objects of a multi-document YAML file ("---" separated).
func Objects(t *testing.T, file string) []runtime.Object {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{scheme.AddToScheme, istioscheme.AddToScheme, gatewayscheme.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	dec := serializer.NewCodecFactory(s).UniversalDeserializer()
	var objs []runtime.Object
	for _, doc := range strings.Split(string(b), "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		obj, _, err := dec.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		objs = append(objs, obj)
	}
	return objs
}

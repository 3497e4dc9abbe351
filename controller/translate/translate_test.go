package translate

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istioscheme "istio.io/client-go/pkg/clientset/versioned/scheme"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestGolden translates each testdata/*.yaml (Kubernetes and Istio objects) and compares the
// resources, what each node receives and the warnings with testdata/*.golden.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			in := readInput(t, f)
			got := render(t, Build(in, Options{}), in)
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the translation (run with -update and review the diff):\n%s", golden, got)
			}
		})
	}
}

func readInput(t *testing.T, file string) Input {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{scheme.AddToScheme, istioscheme.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	dec := serializer.NewCodecFactory(s).UniversalDeserializer()
	var in Input
	for _, doc := range strings.Split(string(b), "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		obj, _, err := dec.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		switch o := obj.(type) {
		case *corev1.Namespace:
			in.Namespaces = append(in.Namespaces, o)
		case *corev1.Pod:
			in.Pods = append(in.Pods, o)
		case *corev1.Service:
			in.Services = append(in.Services, o)
		case *discoveryv1.EndpointSlice:
			in.EndpointSlices = append(in.EndpointSlices, o)
		case *securityv1.PeerAuthentication:
			in.PeerAuthentications = append(in.PeerAuthentications, o)
		default:
			t.Fatalf("%s: unexpected %T", file, obj)
		}
	}
	return in
}

// render writes m as indented JSON: the resources by name, the names each node receives, and
// the warnings. protojson's output is normalised through encoding/json so that it is stable.
func render(t *testing.T, m *Mesh, in Input) []byte {
	t.Helper()
	resources := map[string]json.RawMessage{}
	for name, r := range m.Resources {
		b, err := protojson.Marshal(r.Address)
		if err != nil {
			t.Fatal(err)
		}
		resources[name] = b
	}
	nodes := map[string][]string{}
	for _, p := range in.Pods {
		if p.Spec.NodeName != "" {
			nodes[p.Spec.NodeName] = Names(m.ForNode(p.Spec.NodeName))
		}
	}
	warnings := []string{}
	for _, w := range m.Warnings {
		warnings = append(warnings, w.Error())
	}
	b, err := json.Marshal(map[string]any{"resources": resources, "nodes": nodes, "warnings": warnings})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

package rbac

import (
	"encoding/json"
	"flag"
	"regexp"
	"testing"

	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/weftmesh/weft/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// testInput is the waypoint every testdata file is translated for: Gateway foo/waypoint,
// Services foo/httpbin and foo/reviews bound to it.
func testInput(policies []*securityv1.AuthorizationPolicy) Input {
	return Input{
		WaypointName:      "waypoint",
		WaypointNamespace: "foo",
		RootNamespace:     "istio-system",
		Services:          []string{"foo/httpbin", "foo/reviews"},
		Policies:          policies,
	}
}

// TestGolden translates each testdata/*.yaml (AuthorizationPolicies) and compares the filters
// and the status with testdata/*.golden.
func TestGolden(t *testing.T) {
	golden.Run(t, "testdata/*.yaml", *update, func(t *testing.T, objs []runtime.Object) []byte {
		out := Build(testInput(policiesOf(t, objs)))
		checkValid(t, out)
		return render(t, out)
	})
}

func readPolicies(t *testing.T, file string) []*securityv1.AuthorizationPolicy {
	return policiesOf(t, golden.Objects(t, file))
}

func policiesOf(t *testing.T, objs []runtime.Object) []*securityv1.AuthorizationPolicy {
	t.Helper()
	var out []*securityv1.AuthorizationPolicy
	for _, obj := range objs {
		ap, ok := obj.(*securityv1.AuthorizationPolicy)
		if !ok {
			t.Fatalf("unexpected %T", obj)
		}
		out = append(out, ap)
	}
	return out
}

// checkValid runs go-control-plane's validation on every filter and compiles every regex.
func checkValid(t *testing.T, out Output) {
	t.Helper()
	chains := map[string][]*rbachttpv3.RBAC{"gateway": out.Gateway}
	for s, fs := range out.Services {
		chains[s] = fs
	}
	for name, fs := range chains {
		for i, f := range fs {
			if err := f.ValidateAll(); err != nil {
				t.Errorf("%s filter %d: %v", name, i, err)
			}
			walkRegex(f.ProtoReflect(), func(re string) {
				if _, err := regexp.Compile(re); err != nil {
					t.Errorf("%s filter %d: regex %q: %v", name, i, re, err)
				}
			})
		}
	}
}

func walkRegex(m protoreflect.Message, fn func(string)) {
	if rm, ok := m.Interface().(*matcherv3.RegexMatcher); ok {
		fn(rm.GetRegex())
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					walkRegex(mv.Message(), fn)
					return true
				})
			}
		case fd.IsList():
			if fd.Message() != nil {
				for i := 0; i < v.List().Len(); i++ {
					walkRegex(v.List().Get(i).Message(), fn)
				}
			}
		case fd.Message() != nil:
			walkRegex(v.Message(), fn)
		}
		return true
	})
}

// render is the normalized JSON of out: protojson, re-indented with sorted keys.
func render(t *testing.T, out Output) []byte {
	t.Helper()
	filtersJSON := func(fs []*rbachttpv3.RBAC) []any {
		list := []any{}
		for _, f := range fs {
			list = append(list, normalize(t, f))
		}
		return list
	}
	services := map[string]any{}
	for s, fs := range out.Services {
		services[s] = filtersJSON(fs)
	}
	doc := map[string]any{
		"gateway":  filtersJSON(out.Gateway),
		"services": services,
		"status":   out.Status,
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func normalize(t *testing.T, m proto.Message) any {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	// protojson leaves out the default action; spell it out for the reader.
	for _, k := range []string{"rules", "shadowRules"} {
		if r, ok := v[k].(map[string]any); ok {
			if _, ok := r["action"]; !ok {
				r["action"] = "ALLOW"
			}
		}
	}
	return v
}

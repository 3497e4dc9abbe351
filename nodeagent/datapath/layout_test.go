package datapath

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// normalize maps a C member name and a Go field name to the same form: n_ips, NIPs -> nips.
func normalize(name string) string {
	return strings.ToLower(strings.ReplaceAll(name, "_", ""))
}

// compareStruct checks that the Go type has the C struct's size and, member by member in order,
// its names, offsets and sizes.
func compareStruct(t *testing.T, c *btf.Struct, goType reflect.Type) {
	t.Helper()
	size, err := btf.Sizeof(c)
	if err != nil {
		t.Fatal(err)
	}
	if uintptr(size) != goType.Size() {
		t.Errorf("struct %s: %d bytes in C, %d in Go (%v)", c.Name, size, goType.Size(), goType)
	}
	if len(c.Members) != goType.NumField() {
		t.Fatalf("struct %s: %d members in C, %d fields in Go", c.Name, len(c.Members), goType.NumField())
	}
	for i, m := range c.Members {
		f := goType.Field(i)
		msize, err := btf.Sizeof(m.Type)
		if err != nil {
			t.Fatal(err)
		}
		if normalize(m.Name) != normalize(f.Name) || uintptr(m.Offset.Bytes()) != f.Offset || uintptr(msize) != f.Type.Size() {
			t.Errorf("struct %s: member %s at %d (%d bytes), Go field %s at %d (%d bytes)",
				c.Name, m.Name, m.Offset.Bytes(), msize, f.Name, f.Offset, f.Type.Size())
		}
	}
}

func objectSpecs(t *testing.T) map[string]*ebpf.CollectionSpec {
	t.Helper()
	specs := map[string]*ebpf.CollectionSpec{}
	for name, load := range map[string]func() (*ebpf.CollectionSpec, error){"connect": loadConnect, "inbound": loadInbound} {
		spec, err := load()
		if err != nil {
			t.Fatal(err)
		}
		specs[name] = spec
	}
	return specs
}

// TestLayout compares every struct and enum shared between the C programs and Go with the BTF
// of each compiled object that uses it.
func TestLayout(t *testing.T) {
	specs := objectSpecs(t)
	structs := []struct {
		c       string
		goType  any
		objects []string
	}{
		{"pod_config", podConfig{}, []string{"connect", "inbound"}},
		{"orig_dst", origDst{}, []string{"connect"}},
		{"sock_key", sockKey{}, []string{"connect"}},
		{"upstream_key", upstreamKey{}, []string{"connect", "inbound"}},
		{"listener_key", listenerKey{}, []string{"inbound"}},
	}
	for _, tt := range structs {
		for _, obj := range tt.objects {
			t.Run(obj+"/"+tt.c, func(t *testing.T) {
				var s *btf.Struct
				if err := specs[obj].Types.TypeByName(tt.c, &s); err != nil {
					t.Fatal(err)
				}
				compareStruct(t, s, reflect.TypeOf(tt.goType))
			})
		}
	}

	enums := []struct {
		c      string
		prefix string
		goName func(string, uint64) bool // whether the enumerator matches Go
	}{
		{"weft_stat", "WEFT_STAT_", func(name string, v uint64) bool {
			if name == "MAX" {
				return v == uint64(numStats)
			}
			return Stat(v) < numStats && Stat(v).String() == strings.ToLower(name)
		}},
		{"weft_pod_flag", "WEFT_POD_", func(name string, v uint64) bool {
			return map[string]podFlag{"OUTBOUND": podOutbound, "INBOUND": podInbound}[name] == podFlag(v)
		}},
	}
	for _, tt := range enums {
		for obj, spec := range specs {
			t.Run(obj+"/"+tt.c, func(t *testing.T) {
				var e *btf.Enum
				if err := spec.Types.TypeByName(tt.c, &e); err != nil {
					t.Fatal(err)
				}
				for _, v := range e.Values {
					if !tt.goName(strings.TrimPrefix(v.Name, tt.prefix), v.Value) {
						t.Errorf("enum %s: %s = %d has no Go counterpart", tt.c, v.Name, v.Value)
					}
				}
			})
		}
	}

	for obj, spec := range specs {
		if n := spec.Maps["stats"].MaxEntries; n != uint32(numStats) {
			t.Errorf("%s: stats map has %d entries, Go has %d counters", obj, n, numStats)
		}
	}
}

// TestLayoutSkLookupContext checks the test-run context of sk_lookup programs against the
// running kernel's struct bpf_sk_lookup.
func TestLayoutSkLookupContext(t *testing.T) {
	kernel, err := btf.LoadKernelSpec()
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, btf.ErrNotSupported) {
		t.Skipf("no kernel BTF: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	var s *btf.Struct
	if err := kernel.TypeByName("bpf_sk_lookup", &s); err != nil {
		t.Fatal(err)
	}
	goType := reflect.TypeOf(skLookupCtx{})
	size, _ := btf.Sizeof(s)
	if uintptr(size) != goType.Size() {
		t.Errorf("bpf_sk_lookup: %d bytes, Go %d", size, goType.Size())
	}
	for _, m := range s.Members {
		name := m.Name
		if name == "" {
			name = "cookie" // the union of sk and cookie
		}
		f, ok := goType.FieldByNameFunc(func(n string) bool { return normalize(n) == normalize(name) })
		if !ok {
			t.Errorf("bpf_sk_lookup.%s has no Go field", name)
			continue
		}
		msize, _ := btf.Sizeof(m.Type)
		if uintptr(m.Offset.Bytes()) != f.Offset || uintptr(msize) != f.Type.Size() {
			t.Errorf("bpf_sk_lookup.%s at %d (%d bytes), Go %s at %d (%d bytes)", name, m.Offset.Bytes(), msize, f.Name, f.Offset, f.Type.Size())
		}
	}
}

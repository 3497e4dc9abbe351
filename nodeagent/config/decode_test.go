package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/nodeagent/state"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test -update after checking):\n%s", path, got)
	}
}

// TestExample decodes testdata/example.yaml and compares the snapshot with its golden dump.
func TestExample(t *testing.T) {
	snap, err := LoadFile(filepath.Join("testdata", "example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := snap.Version(), "bdf824511652b7c0"; got != want {
		t.Errorf("version = %s, want %s (the first 16 hex digits of the content's SHA-256)", got, want)
	}
	got := dump(t, snap)
	golden(t, "example.golden.json", got)

	// The dump is itself a valid configuration file that decodes to the same snapshot.
	snap2, err := Decode(got, "v")
	if err != nil {
		t.Fatalf("the dump does not decode: %v", err)
	}
	if got2 := dump(t, snap2); !bytes.Equal(got, got2) {
		t.Errorf("dump round trip differs:\n%s", got2)
	}

	// The JSON form of the example decodes to the same snapshot.
	yamlData, err := os.ReadFile(filepath.Join("testdata", "example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	snap3, err := Decode(toJSON(t, yamlData), "v")
	if err != nil {
		t.Fatalf("JSON form: %v", err)
	}
	if got3 := dump(t, snap3); !bytes.Equal(got, got3) {
		t.Errorf("JSON and YAML forms differ:\n%s", got3)
	}
}

// dump returns the snapshot's workloads, services and authorizations as indented JSON.
func dump(t *testing.T, s *state.Snapshot) []byte {
	t.Helper()
	b, err := json.MarshalIndent(struct {
		Workloads      []*state.Workload      `json:"workloads"`
		Services       []*state.Service       `json:"services"`
		Authorizations []*state.Authorization `json:"authorizations,omitempty"`
	}{s.Workloads(), s.Services(), s.Authorizations()}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func toJSON(t *testing.T, yamlData []byte) []byte {
	t.Helper()
	var v any
	// Round trip through the decoder's own conversion.
	js, err := yaml.YAMLToJSON(yamlData)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	return out
}

const (
	okWorkload = `{uid: u1, name: a, namespace: ns, addresses: [10.0.0.1], tunnelProtocol: HBONE}`
)

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // the exact error
	}{
		{
			name: "empty file",
			in:   "  \n",
			want: `config: the file is empty; write "workloads: []" for a configuration without workloads`,
		},
		{
			name: "bad address",
			in: `workloads:
- ` + okWorkload + `
- {uid: u2, name: b, namespace: ns, addresses: [10.0.0.2]}
- {uid: u3, name: c, namespace: ns, addresses: [10.0.0.3]}
- {uid: u4, name: d, namespace: ns, addresses: [10.0.0.x]}
`,
			want: `config: workloads[3].addresses[0]: "10.0.0.x" is not an IP address; write an IPv4 or IPv6 address`,
		},
		{
			name: "address with zone",
			in:   `workloads: [{uid: u1, name: a, namespace: ns, addresses: ["fe80::1%eth0"]}]`,
			want: `config: workloads[0].addresses[0]: "fe80::1%eth0" has a zone; write the address without "%eth0"`,
		},
		{
			name: "unknown field with suggestion",
			in:   `workloads: [{uid: u1, nmae: a, namespace: ns, addresses: [10.0.0.1]}]`,
			want: `config: workloads[0].nmae: unknown field; did you mean "name"?`,
		},
		{
			name: "unknown field, case",
			in:   `workloads: [{uid: u1, name: a, namespace: ns, addresses: [10.0.0.1], serviceaccount: sa}]`,
			want: `config: workloads[0].serviceaccount: unknown field; did you mean "serviceAccount"?`,
		},
		{
			name: "unknown top-level field",
			in:   `workload: []`,
			want: `config: workload: unknown field; did you mean "workloads"?`,
		},
		{
			name: "unknown field without suggestion",
			in:   `services: [{name: s, namespace: ns, hostname: h, ports: [{port: 80, protocol: TCP}]}]`,
			want: `config: services[0].ports[0].protocol: unknown field; the fields here are name, port, targetPort, appProtocol`,
		},
		{
			name: "unknown nested field",
			in:   `workloads: [{uid: u1, name: a, namespace: ns, addresses: [10.0.0.1], peerAuthentication: {mtls: {mode: STRICT, strict: true}}}]`,
			want: `config: workloads[0].peerAuthentication.mtls.strict: unknown field; the fields here are mode`,
		},
		{
			name: "duplicate key",
			in:   "workloads:\n- uid: u1\n  uid: u2\n",
			want: `config: the file is not valid YAML or JSON: yaml: unmarshal errors:` + "\n" + `  line 3: key "uid" already set in map`,
		},
		{
			name: "syntax error",
			in:   "workloads: [\n",
			want: "config: the file is not valid YAML or JSON: yaml: line 1: did not find expected node content",
		},
		{
			name: "not a mapping",
			in:   "- a\n- b\n",
			want: `config: expected a mapping of fields, found a list`,
		},
		{
			name: "list expected",
			in:   `workloads: [{uid: u1, name: a, namespace: ns, addresses: 10.0.0.1}]`,
			want: `config: workloads[0].addresses: expected a list, found the string "10.0.0.1"; write a list, e.g. [a, b]`,
		},
		{
			name: "string expected",
			in:   `workloads: [{uid: u1, name: a, namespace: ns, addresses: [10.0.0.1], canonicalRevision: 2}]`,
			want: `config: workloads[0].canonicalRevision: expected a string, found the number 2; quote the value`,
		},
		{
			name: "label value not a string",
			in:   `workloads: [{uid: u1, name: a, namespace: ns, addresses: [10.0.0.1], labels: {canary: true}}]`,
			want: `config: workloads[0].labels[canary]: expected a string, found a boolean; quote the value (YAML reads unquoted true, false, yes, no, on and off as booleans)`,
		},
		{
			name: "YAML boolean mode",
			in:   `workloads: [{uid: u1, name: a, namespace: ns, addresses: [10.0.0.1], peerAuthentication: {mtls: {mode: OFF}}}]`,
			want: `config: workloads[0].peerAuthentication.mtls.mode: expected a string, found a boolean; quote the value (YAML reads unquoted true, false, yes, no, on and off as booleans)`,
		},
		{
			name: "number expected",
			in:   `services: [{name: s, namespace: ns, hostname: h, ports: [{port: http}]}]`,
			want: `config: services[0].ports[0].port: expected a number, found the string "http"`,
		},
		{
			name: "fractional port",
			in:   `services: [{name: s, namespace: ns, hostname: h, ports: [{port: 80.5}]}]`,
			want: `config: services[0].ports[0].port: 80.5 is not a port number; write a port number from 1 to 65535`,
		},
		{
			name: "ports out of range",
			in: `workloads: [{uid: u1, name: a, namespace: ns, addresses: [10.0.0.1], excludeInboundPorts: [80, 70000],
  peerAuthentication: {portLevelMtls: {0: {mode: STRICT}, http: {mode: STRICT}}}}]
services:
- name: s
  namespace: ns
  hostname: h
  ports: [{port: 0}, {port: 80, targetPort: -1}, null]
  endpoints: [{workloadUid: u1, ports: {80: 65536}}, null]
  waypoint: {hboneMtlsPort: 15008}
`,
			want: `config: workloads[0].excludeInboundPorts[1]: 70000 is out of range; write a port number from 1 to 65535
workloads[0].peerAuthentication.portLevelMtls[0]: 0 is out of range; write a port number from 1 to 65535
workloads[0].peerAuthentication.portLevelMtls[http]: "http" is not a port number; write a port number from 1 to 65535
services[0].waypoint.address: missing; write the waypoint's IP address or name its Service (namespace and hostname)
services[0].ports[0].port: 0 is out of range; write a port number from 1 to 65535
services[0].ports[1].targetPort: -1 is out of range; write a port number from 1 to 65535
services[0].ports[2]: empty entry; describe a port, e.g. {port: 80, targetPort: 8080}, or remove the entry
services[0].endpoints[0].ports[80]: 65536 is out of range; write a port number from 1 to 65535
services[0].endpoints[1]: empty entry; describe an endpoint, e.g. {workloadUid: <uid>}, or remove the entry`,
		},
		{
			name: "unknown enum values",
			in: `workloads: [{uid: u1, name: a, namespace: ns, addresses: [10.0.0.1], tunnelProtocol: hbone, status: READY,
  workloadType: STATEFULSET, peerAuthentication: {mtls: {mode: STRCT}, portLevelMtls: {8080: {mode: OF}}}}]
services: [{name: s, namespace: ns, hostname: h, ports: [{port: 80, appProtocol: HTTP}]}]
`,
			want: `config: workloads[0].tunnelProtocol: "hbone" is not a tunnel protocol; write NONE or HBONE
workloads[0].status: "READY" is not a workload status; write HEALTHY or UNHEALTHY
workloads[0].workloadType: "STATEFULSET" is not a workload type; write DEPLOYMENT, CRONJOB, POD or JOB
workloads[0].peerAuthentication.mtls.mode: "STRCT" is not a mode; write UNSET, DISABLE, PERMISSIVE or STRICT
workloads[0].peerAuthentication.portLevelMtls[8080].mode: "OF" is not a mode; write UNSET, DISABLE, PERMISSIVE or STRICT
services[0].ports[0].appProtocol: "HTTP" is not an app protocol; write UNKNOWN, HTTP11, HTTP2 or GRPC`,
		},
		{
			name: "semantic problems from state",
			in: `workloads:
- ` + okWorkload + `
- {uid: u1, name: b, namespace: ns, addresses: [10.0.0.1]}
services:
- {name: s, namespace: ns, hostname: h, ports: [{port: 80}], endpoints: [{workloadUid: u9}]}
`,
			want: `config: workloads[1].uid: "u1" is already the uid of workloads[0]; give every workload a unique uid
services[0].endpoints[0].workloadUid: no workload has uid "u9"; add that workload or remove the endpoint`,
		},
		{
			name: "null entries",
			in:   "workloads: [null]\n",
			want: `config: workloads[0]: empty entry; describe a workload or remove the entry`,
		},
		{
			name: "authorization: malformed values",
			in: `workloads: []
authorizations:
- {name: a, namespace: ns}
- {name: b, namespace: ns}
- name: c
  namespace: ns
  scope: SELECTOR
  action: CUSTOM
  rules:
  - clauses:
    - matches: [{principals: [x]}]
    - matches:
      - sourceIps: [10.0.0.0/8, 10.0.0.1, "fd00::/64", 10.0.0.0/33]
        destinationPorts: [70000]
  - null
  - clauses: [null, {matches: [null]}]
`,
			want: `config: authorizations[2].scope: "SELECTOR" is not an authorization scope; write WORKLOAD_SELECTOR, NAMESPACE or GLOBAL
authorizations[2].action: "CUSTOM" is not an authorization action; write ALLOW, DENY or AUDIT
authorizations[2].rules[0].clauses[1].matches[0].sourceIps[3]: "10.0.0.0/33" is not a CIDR; write a CIDR such as 10.0.0.0/8 or fd00::/64, or a single address
authorizations[2].rules[0].clauses[1].matches[0].destinationPorts[0]: 70000 is out of range; write a port number from 1 to 65535
authorizations[2].rules[1]: empty entry; write {} for a rule that matches every connection, or remove the entry
authorizations[2].rules[2].clauses[0]: empty entry; describe a clause, e.g. {matches: [{principals: [<principal>]}]}, or remove the entry
authorizations[2].rules[2].clauses[1].matches[0]: empty entry; describe a match, e.g. {namespaces: [shop]}, or remove the entry`,
		},
		{
			name: "authorization: unknown field",
			in:   "authorizations: [{name: a, namespace: ns, rules: [{clauses: [{matches: [{ipBlocks: [10.0.0.0/8]}]}]}]}]\n",
			want: `config: authorizations[0].rules[0].clauses[0].matches[0].ipBlocks: unknown field; the fields here are namespaces, notNamespaces, principals, notPrincipals, sourceIps, notSourceIps, destinationIps, notDestinationIps, destinationPorts, notDestinationPorts`,
		},
		{
			name: "authorization: semantic problems from state",
			in: `workloads:
- {uid: u1, name: a, namespace: ns, addresses: [10.0.0.1], authorizationPolicies: [ns/missing]}
authorizations:
- {name: a, namespace: ns, rules: [{clauses: [{matches: [{namespaces: ["", "*x*"]}]}]}]}
- {name: a, namespace: ns}
`,
			want: `config: authorizations[0].rules[0].clauses[0].matches[0].namespaces[0]: empty exact value; write a value, "prefix*", "*suffix" or "*" (any value)
authorizations[1].name: "ns/a" is already authorizations[0]; describe each policy once`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap, err := Decode([]byte(tt.in), "v")
			if err == nil {
				t.Fatalf("Decode succeeded with %d workloads", len(snap.Workloads()))
			}
			if err.Error() != tt.want {
				t.Errorf("Decode error:\n%s\nwant:\n%s", err, tt.want)
			}
		})
	}
}

func TestDecodeValid(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		check func(t *testing.T, s *state.Snapshot)
	}{
		{
			name: "no workloads",
			in:   "workloads: []\n",
			check: func(t *testing.T, s *state.Snapshot) {
				if len(s.Workloads()) != 0 {
					t.Error("workloads found")
				}
			},
		},
		{
			name: "json",
			in:   `{"workloads": [{"uid": "u1", "name": "a", "namespace": "ns", "addresses": ["::ffff:10.0.0.1"], "tunnelProtocol": "HBONE"}]}`,
			check: func(t *testing.T, s *state.Snapshot) {
				w, ok := s.WorkloadByIP(netip.MustParseAddr("10.0.0.1"))
				if !ok || w.UID != "u1" || !w.Enrolled() || w.Addresses[0].String() != "10.0.0.1" {
					t.Errorf("workload = %+v", w)
				}
			},
		},
		{
			name: "defaults and nulls",
			in:   "workloads:\n- {uid: u1, name: a, namespace: ns, addresses: [10.0.0.1], labels: null, peerAuthentication: {portLevelMtls: {80: null}}}\n",
			check: func(t *testing.T, s *state.Snapshot) {
				w, _ := s.WorkloadByUID("u1")
				if w.Enrolled() || !w.Healthy() || w.Identity().String() != "spiffe://cluster.local/ns/ns/sa/default" {
					t.Errorf("defaults wrong: %+v", w)
				}
				if m, ok := w.PeerAuthentication.PortLevel[80]; !ok || m != state.ModeUnset {
					t.Errorf("port-level null = %v, %v", m, ok)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Decode([]byte(tt.in), "v1")
			if err != nil {
				t.Fatal(err)
			}
			if s.Version() != "v1" {
				t.Errorf("version = %s", s.Version())
			}
			tt.check(t, s)
		})
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"uid", "name", "namespace", "addresses"}
	tests := []struct{ in, want string }{
		{"nmae", `did you mean "name"?`},
		{"Name", `did you mean "name"?`},
		{"adresses", `did you mean "addresses"?`},
		{"zzzzzz", "the fields here are uid, name, namespace, addresses"},
	}
	for _, tt := range tests {
		if got := suggest(tt.in, known); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if !strings.Contains(suggest("x", known), "uid") {
		t.Error("short unknown field")
	}
}

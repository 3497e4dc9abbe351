package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/nodeagent/state"
)

// The file format. Field names follow Istio's workload API in camelCase; every field is
// optional unless the validation says otherwise.

type fileConfig struct {
	Workloads      []*fileWorkload      `json:"workloads"`
	Services       []*fileService       `json:"services"`
	Authorizations []*fileAuthorization `json:"authorizations"`
}

type fileWorkload struct {
	UID                   string                  `json:"uid"`
	Name                  string                  `json:"name"`
	Namespace             string                  `json:"namespace"`
	ServiceAccount        string                  `json:"serviceAccount"`
	TrustDomain           string                  `json:"trustDomain"`
	Node                  string                  `json:"node"`
	ClusterID             string                  `json:"clusterId"`
	Addresses             []string                `json:"addresses"`
	TunnelProtocol        string                  `json:"tunnelProtocol"`
	NativeTunnel          bool                    `json:"nativeTunnel"`
	Waypoint              *fileGateway            `json:"waypoint"`
	Status                string                  `json:"status"`
	WorkloadName          string                  `json:"workloadName"`
	WorkloadType          string                  `json:"workloadType"`
	CanonicalName         string                  `json:"canonicalName"`
	CanonicalRevision     string                  `json:"canonicalRevision"`
	Labels                map[string]string       `json:"labels"`
	ExcludeInboundPorts   []int                   `json:"excludeInboundPorts"`
	ExcludeOutboundPorts  []int                   `json:"excludeOutboundPorts"`
	PeerAuthentication    *filePeerAuthentication `json:"peerAuthentication"`
	AuthorizationPolicies []string                `json:"authorizationPolicies"`
}

type fileGateway struct {
	Address        string `json:"address"`
	HBONEMTLSPort  int    `json:"hboneMtlsPort"`
	Namespace      string `json:"namespace"`
	Hostname       string `json:"hostname"`
	FallbackDirect bool   `json:"fallbackDirect"`
}

// filePeerAuthentication has the shape of the spec of Istio's PeerAuthentication.
type filePeerAuthentication struct {
	MTLS          *fileMTLS            `json:"mtls"`
	PortLevelMTLS map[string]*fileMTLS `json:"portLevelMtls"`
}

type fileMTLS struct {
	Mode string `json:"mode"`
}

type fileService struct {
	Name      string          `json:"name"`
	Namespace string          `json:"namespace"`
	Hostname  string          `json:"hostname"`
	VIPs      []string        `json:"vips"`
	Ports     []*filePort     `json:"ports"`
	Endpoints []*fileEndpoint `json:"endpoints"`
	Waypoint  *fileGateway    `json:"waypoint"`
}

type filePort struct {
	Name        string `json:"name"`
	Port        int    `json:"port"`
	TargetPort  int    `json:"targetPort"`
	AppProtocol string `json:"appProtocol"`
}

type fileEndpoint struct {
	WorkloadUID string         `json:"workloadUid"`
	Ports       map[string]int `json:"ports"`
}

// Decode parses a configuration file's content (YAML or JSON), checks it and returns the
// snapshot of version. Unknown fields, values of the wrong type, malformed addresses, ports out
// of range, unknown enumeration values and every problem [state.Snapshot.Validate] finds are
// errors naming the field and the fix; the error is then a *[state.ValidationError] wrapped
// with a "config: " prefix. The returned snapshot is always valid.
func Decode(data []byte, version string) (*state.Snapshot, error) {
	snap, err := decode(data, version)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return snap, nil
}

func decode(data []byte, version string) (*state.Snapshot, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		// An empty file is more often a file caught halfway through a write than a mesh
		// without workloads.
		return nil, errors.New("the file is empty; write \"workloads: []\" for a configuration without workloads")
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		// Drop the library's "error converting YAML to JSON: " prefix.
		msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
		return nil, fmt.Errorf("the file is not valid YAML or JSON: %s", msg)
	}

	// First pass: check the shape against the file types, so that an unknown field or a
	// value of the wrong type is reported with its path.
	var raw any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	var p state.Problems
	checkShape(&p, "", raw, reflect.TypeFor[fileConfig]())
	if err := p.Err(); err != nil {
		return nil, err
	}

	// Second pass: decode strictly. The shape check has caught what this rejects.
	var fc fileConfig
	dec = json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fc); err != nil {
		return nil, err
	}

	ws, ss := convert(&p, &fc)
	as := convertAuthorizations(&p, fc.Authorizations)
	if err := p.Err(); err != nil {
		return nil, err
	}
	snap := state.NewSnapshot(version, ws, ss, state.WithAuthorizations(as))
	if err := snap.Validate(); err != nil {
		return nil, err
	}
	return snap, nil
}

// checkShape walks v, a value decoded from JSON with UseNumber, along type t and records
// unknown fields and values of the wrong kind. null is accepted everywhere (the zero value).
func checkShape(p *state.Problems, path string, v any, t reflect.Type) {
	if v == nil {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			p.Add(path, "expected a mapping of fields, found %s", describe(v))
			return
		}
		names, types := jsonFields(t)
		for _, k := range sortedKeys(m) {
			ft, ok := types[k]
			if !ok {
				p.Add(joinPath(path, k), "unknown field; %s", suggest(k, names))
				continue
			}
			checkShape(p, joinPath(path, k), m[k], ft)
		}
	case reflect.Slice:
		l, ok := v.([]any)
		if !ok {
			p.Add(path, "expected a list, found %s; write a list, e.g. [a, b]", describe(v))
			return
		}
		for i, e := range l {
			checkShape(p, path+"["+strconv.Itoa(i)+"]", e, t.Elem())
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			p.Add(path, "expected a mapping, found %s", describe(v))
			return
		}
		for _, k := range sortedKeys(m) {
			checkShape(p, path+"["+k+"]", m[k], t.Elem())
		}
	case reflect.String:
		switch v := v.(type) {
		case string:
		case json.Number:
			p.Add(path, "expected a string, found %s; quote the value", describe(v))
		case bool:
			p.Add(path, "expected a string, found a boolean; quote the value (YAML reads unquoted true, false, yes, no, on and off as booleans)")
		default:
			p.Add(path, "expected a string, found %s", describe(v))
		}
	case reflect.Int:
		n, ok := v.(json.Number)
		if !ok {
			p.Add(path, "expected a number, found %s", describe(v))
			return
		}
		if _, err := strconv.ParseInt(string(n), 10, 32); err != nil {
			// Every number of the file is a port.
			p.Add(path, "%s is not a port number; write a port number from 1 to 65535", n)
		}
	}
}

func describe(v any) string {
	switch v := v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return fmt.Sprintf("the string %q", v)
	case json.Number:
		return "the number " + string(v)
	case bool:
		return fmt.Sprintf("%t", v)
	default:
		return fmt.Sprintf("%T", v)
	}
}

func joinPath(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// jsonFields returns the JSON names of the fields of struct type t, in declaration order, and
// their types.
func jsonFields(t reflect.Type) ([]string, map[string]reflect.Type) {
	names := make([]string, 0, t.NumField())
	types := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		names = append(names, name)
		types[name] = f.Type
	}
	return names, types
}

// suggest proposes the known field closest to an unknown one, or lists the known fields.
func suggest(unknown string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if strings.EqualFold(k, unknown) {
			return fmt.Sprintf("did you mean %q?", k)
		}
		if d := distance(unknown, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf("did you mean %q?", best)
	}
	return "the fields here are " + strings.Join(known, ", ")
}

// distance is the Levenshtein distance between a and b (ASCII).
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// convert turns the decoded file into state types, recording malformed values.
func convert(p *state.Problems, fc *fileConfig) ([]*state.Workload, []*state.Service) {
	ws := make([]*state.Workload, len(fc.Workloads))
	for i, fw := range fc.Workloads {
		if fw != nil {
			ws[i] = convertWorkload(p, "workloads["+strconv.Itoa(i)+"]", fw)
		}
	}
	ss := make([]*state.Service, len(fc.Services))
	for i, fs := range fc.Services {
		if fs != nil {
			ss[i] = convertService(p, "services["+strconv.Itoa(i)+"]", fs)
		}
	}
	return ws, ss
}

func convertWorkload(p *state.Problems, path string, fw *fileWorkload) *state.Workload {
	w := &state.Workload{
		UID:                   fw.UID,
		Name:                  fw.Name,
		Namespace:             fw.Namespace,
		ServiceAccount:        fw.ServiceAccount,
		TrustDomain:           fw.TrustDomain,
		Node:                  fw.Node,
		ClusterID:             fw.ClusterID,
		WorkloadName:          fw.WorkloadName,
		CanonicalName:         fw.CanonicalName,
		CanonicalRevision:     fw.CanonicalRevision,
		Labels:                fw.Labels,
		AuthorizationPolicies: fw.AuthorizationPolicies,
		NativeTunnel:          fw.NativeTunnel,
	}
	w.Addresses = parseAddrs(p, path+".addresses", fw.Addresses)
	parseEnum(p, path+".tunnelProtocol", fw.TunnelProtocol, &w.TunnelProtocol)
	parseEnum(p, path+".status", fw.Status, &w.Status)
	parseEnum(p, path+".workloadType", fw.WorkloadType, &w.WorkloadType)
	w.Waypoint = convertGateway(p, path+".waypoint", fw.Waypoint)
	w.ExcludeInboundPorts = parsePorts(p, path+".excludeInboundPorts", fw.ExcludeInboundPorts)
	w.ExcludeOutboundPorts = parsePorts(p, path+".excludeOutboundPorts", fw.ExcludeOutboundPorts)
	if pa := fw.PeerAuthentication; pa != nil {
		pp := path + ".peerAuthentication"
		if pa.MTLS != nil {
			parseEnum(p, pp+".mtls.mode", pa.MTLS.Mode, &w.PeerAuthentication.Mode)
		}
		if len(pa.PortLevelMTLS) > 0 {
			w.PeerAuthentication.PortLevel = make(map[uint16]state.Mode, len(pa.PortLevelMTLS))
			for _, k := range sortedKeys(pa.PortLevelMTLS) {
				kp := pp + ".portLevelMtls[" + k + "]"
				port, ok := parsePortKey(p, kp, k)
				if !ok {
					continue
				}
				var m state.Mode
				if v := pa.PortLevelMTLS[k]; v != nil {
					parseEnum(p, kp+".mode", v.Mode, &m)
				}
				w.PeerAuthentication.PortLevel[port] = m
			}
		}
	}
	return w
}

func convertService(p *state.Problems, path string, fs *fileService) *state.Service {
	svc := &state.Service{
		Name:      fs.Name,
		Namespace: fs.Namespace,
		Hostname:  fs.Hostname,
	}
	svc.VIPs = parseAddrs(p, path+".vips", fs.VIPs)
	svc.Waypoint = convertGateway(p, path+".waypoint", fs.Waypoint)
	for k, fp := range fs.Ports {
		pp := path + ".ports[" + strconv.Itoa(k) + "]"
		if fp == nil {
			p.Add(pp, "empty entry; describe a port, e.g. {port: 80, targetPort: 8080}, or remove the entry")
			continue
		}
		sp := state.ServicePort{Name: fp.Name}
		sp.Port, _ = checkPort(p, pp+".port", fp.Port, false)
		sp.TargetPort, _ = checkPort(p, pp+".targetPort", fp.TargetPort, true)
		parseEnum(p, pp+".appProtocol", fp.AppProtocol, &sp.AppProtocol)
		svc.Ports = append(svc.Ports, sp)
	}
	for k, fe := range fs.Endpoints {
		pe := path + ".endpoints[" + strconv.Itoa(k) + "]"
		if fe == nil {
			p.Add(pe, "empty entry; describe an endpoint, e.g. {workloadUid: <uid>}, or remove the entry")
			continue
		}
		ep := state.Endpoint{WorkloadUID: fe.WorkloadUID}
		if len(fe.Ports) > 0 {
			ep.Ports = make(map[uint16]uint16, len(fe.Ports))
			for _, key := range sortedKeys(fe.Ports) {
				kp := pe + ".ports[" + key + "]"
				sport, ok := parsePortKey(p, kp, key)
				if !ok {
					continue
				}
				if tport, ok := checkPort(p, kp, fe.Ports[key], false); ok {
					ep.Ports[sport] = tport
				}
			}
		}
		svc.Endpoints = append(svc.Endpoints, ep)
	}
	return svc
}

func convertGateway(p *state.Problems, path string, fg *fileGateway) *state.GatewayAddress {
	if fg == nil {
		return nil
	}
	g := &state.GatewayAddress{Namespace: fg.Namespace, Hostname: fg.Hostname, FallbackDirect: fg.FallbackDirect}
	switch {
	case fg.Address != "":
		g.Address = parseAddr(p, path+".address", fg.Address)
	case fg.Hostname == "":
		p.Add(path+".address", "missing; write the waypoint's IP address or name its Service (namespace and hostname)")
	}
	g.HBONEMTLSPort, _ = checkPort(p, path+".hboneMtlsPort", fg.HBONEMTLSPort, true)
	return g
}

func parseAddrs(p *state.Problems, path string, in []string) []netip.Addr {
	if in == nil {
		return nil
	}
	out := make([]netip.Addr, 0, len(in))
	for k, s := range in {
		if a := parseAddr(p, path+"["+strconv.Itoa(k)+"]", s); a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

func parseAddr(p *state.Problems, path, s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		p.Add(path, "%q is not an IP address; write an IPv4 or IPv6 address", s)
		return netip.Addr{}
	case a.Zone() != "":
		p.Add(path, "%q has a zone; write the address without %q", s, "%"+a.Zone())
		return netip.Addr{}
	}
	return a.Unmap()
}

func parsePorts(p *state.Problems, path string, in []int) []uint16 {
	if in == nil {
		return nil
	}
	out := make([]uint16, 0, len(in))
	for k, n := range in {
		if port, ok := checkPort(p, path+"["+strconv.Itoa(k)+"]", n, false); ok {
			out = append(out, port)
		}
	}
	return out
}

// checkPort checks that n is a port number; zero is accepted (meaning "default") when
// zeroOK.
func checkPort(p *state.Problems, path string, n int, zeroOK bool) (uint16, bool) {
	if n == 0 && zeroOK {
		return 0, true
	}
	if n < 1 || n > 65535 {
		p.Add(path, "%d is out of range; write a port number from 1 to 65535", n)
		return 0, false
	}
	return uint16(n), true
}

// parsePortKey parses a port number used as a mapping key.
func parsePortKey(p *state.Problems, path, key string) (uint16, bool) {
	n, err := strconv.Atoi(key)
	if err != nil {
		p.Add(path, "%q is not a port number; write a port number from 1 to 65535", key)
		return 0, false
	}
	return checkPort(p, path, n, false)
}

// parseEnum sets *v from its text form; the empty string leaves the default (zero) value.
func parseEnum(p *state.Problems, path, s string, v interface{ UnmarshalText([]byte) error }) {
	if s == "" {
		return
	}
	if err := v.UnmarshalText([]byte(s)); err != nil {
		p.Add(path, "%s", err)
	}
}

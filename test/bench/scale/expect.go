package scale

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/weftmesh/weft/controller/translate"
	"github.com/weftmesh/weft/nodeagent/state"
	"github.com/weftmesh/weft/nodeagent/xds"
)

// Expectation is what one agent must hold once a change reached it: for every resource name
// whose content changes for its node, the resource as the agent converts it (canonical JSON of
// the state.Workload or state.Service), or nil when the resource must be gone.
type Expectation map[string][]byte

// Affected compares, for each node, the resources the controller sends it before and after a
// change (translate.Mesh.ForNode) and returns the expectations of the nodes for which
// anything differs: a resource added, removed, or with another version. Nodes for which
// nothing differs are not in the result: their agents must receive nothing.
func Affected(before, after *translate.Mesh, nodes []string) (map[string]Expectation, error) {
	content := map[string][]byte{} // name → canonical JSON in after, shared by the nodes
	out := map[string]Expectation{}
	for _, n := range nodes {
		b, a := before.ForNode(n), after.ForNode(n)
		var exp Expectation
		for name, r := range a {
			if old, ok := b[name]; ok && old.Version == r.Version {
				continue
			}
			c, ok := content[name]
			if !ok {
				var err error
				if c, err = canonical(r); err != nil {
					return nil, err
				}
				content[name] = c
			}
			if exp == nil {
				exp = Expectation{}
			}
			exp[name] = c
		}
		for name := range b {
			if _, ok := a[name]; !ok {
				if exp == nil {
					exp = Expectation{}
				}
				exp[name] = nil
			}
		}
		if exp != nil {
			out[n] = exp
		}
	}
	return out, nil
}

// canonical returns the JSON of a resource as the agent converts it.
func canonical(r translate.Resource) ([]byte, error) {
	res, err := xds.ConvertResource(r.Address)
	if err != nil {
		return nil, fmt.Errorf("resource %s: %w", r.Address.GetName(), err)
	}
	switch {
	case res.Workload != nil:
		return json.Marshal(res.Workload)
	case res.Service != nil:
		return json.Marshal(res.Service)
	}
	return json.Marshal(res.Authorization)
}

// Met reports whether snap holds what e expects.
func (e Expectation) Met(snap *state.Snapshot) bool {
	if snap == nil {
		return false
	}
	var services map[string]*state.Service // built when first needed
	for name, want := range e {
		var got any
		if w, ok := snap.WorkloadByUID(name); ok {
			got = w
		} else {
			if services == nil {
				services = serviceIndex(snap)
			}
			if s, ok := services[name]; ok {
				got = s
			}
		}
		switch {
		case got == nil && want == nil:
			continue
		case got == nil || want == nil:
			return false
		}
		b, err := json.Marshal(got)
		if err != nil || !bytes.Equal(b, want) {
			return false
		}
	}
	return true
}

// Names returns the expectation's names, sorted.
func (e Expectation) Names() []string { return slices.Sorted(maps.Keys(e)) }

func serviceIndex(snap *state.Snapshot) map[string]*state.Service {
	m := make(map[string]*state.Service, len(snap.Services()))
	for _, s := range snap.Services() {
		m[s.NamespacedHostname()] = s
	}
	return m
}

// NameSet is the set of resource names a node receives.
type NameSet map[string]struct{}

// NodeNames returns the names of the resources m sends to node.
func NodeNames(m *translate.Mesh, node string) NameSet {
	rs := m.ForNode(node)
	out := make(NameSet, len(rs))
	for name := range rs {
		out[name] = struct{}{}
	}
	return out
}

// Holds reports whether snap holds exactly the names of s (content is not compared).
func (s NameSet) Holds(snap *state.Snapshot) bool {
	if snap == nil || len(snap.Workloads())+len(snap.Services()) != len(s) {
		return false
	}
	for _, w := range snap.Workloads() {
		if _, ok := s[w.UID]; !ok {
			return false
		}
	}
	for _, sv := range snap.Services() {
		if _, ok := s[sv.NamespacedHostname()]; !ok {
			return false
		}
	}
	return true
}

// Compare returns the resources in which snap differs from what m sends to node, content
// included: at most max descriptions, and the number of differences.
func Compare(m *translate.Mesh, node string, snap *state.Snapshot, max int) ([]string, int, error) {
	rs := m.ForNode(node)
	var diffs []string
	n := 0
	add := func(format string, args ...any) {
		n++
		if len(diffs) < max {
			diffs = append(diffs, fmt.Sprintf(format, args...))
		}
	}
	services := serviceIndex(snap)
	seen := 0
	for _, name := range translate.Names(rs) {
		want, err := canonical(rs[name])
		if err != nil {
			return nil, 0, err
		}
		var got any
		if w, ok := snap.WorkloadByUID(name); ok {
			got = w
		} else if s, ok := services[name]; ok {
			got = s
		} else if key, ok := strings.CutPrefix(name, state.AuthorizationResourcePrefix); ok {
			if a, ok := snap.Authorization(key); ok {
				got = a
			}
		}
		if got == nil {
			add("%s: missing", name)
			continue
		}
		seen++
		b, err := json.Marshal(got)
		if err != nil {
			return nil, 0, err
		}
		if !bytes.Equal(b, want) {
			add("%s: differs: agent has %s, translation gives %s", name, b, want)
		}
	}
	if extra := len(snap.Workloads()) + len(snap.Services()) - seen; extra > 0 {
		add("%d resources the translation does not send to %s", extra, node)
	}
	return diffs, n, nil
}

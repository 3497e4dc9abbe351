package xds

import (
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/translate"
)

// snapshot is what one node receives: workload discovery's Address resources, with the
// versions the translation computed (go-control-plane's own Snapshot knows only Envoy's
// types, so this implements its cache.ResourceSnapshot for ours).
type snapshot struct {
	version   string
	resources map[string]types.Resource
	versions  map[string]string
}

// newSnapshot returns the snapshot of the union of resource sets (disjoint).
func newSnapshot(version string, sets ...map[string]translate.Resource) *snapshot {
	n := 0
	for _, rs := range sets {
		n += len(rs)
	}
	s := &snapshot{
		version:   version,
		resources: make(map[string]types.Resource, n),
		versions:  make(map[string]string, n),
	}
	for _, rs := range sets {
		for name, r := range rs {
			s.resources[name] = r.Address
			s.versions[name] = r.Version
		}
	}
	return s
}

func (s *snapshot) GetVersion(typeURL string) string {
	if typeURL != api.AddressType {
		return ""
	}
	return s.version
}

func (s *snapshot) GetResourcesAndTTL(typeURL string) map[string]types.ResourceWithTTL {
	if typeURL != api.AddressType {
		return nil
	}
	out := make(map[string]types.ResourceWithTTL, len(s.resources))
	for name, r := range s.resources {
		out[name] = types.ResourceWithTTL{Resource: r}
	}
	return out
}

func (s *snapshot) GetResources(typeURL string) map[string]types.Resource {
	if typeURL != api.AddressType {
		return nil
	}
	return s.resources
}

func (s *snapshot) ConstructVersionMap() error { return nil }

func (s *snapshot) GetVersionMap(typeURL string) map[string]string {
	if typeURL != api.AddressType {
		return nil
	}
	return s.versions
}

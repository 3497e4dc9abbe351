package xds

import (
	"errors"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/weftmesh/weft/nodeagent/state"
)

// resource is one resource in force: a converted workload or service and the version the
// server gave it.
type resource struct {
	version string
	w       *state.Workload // exactly one of w and svc is set
	svc     *state.Service
}

// buildSnapshot makes the snapshot of version from the resources, and validates it. The
// problems of an invalid snapshot are reported as [Errors] against the resources.
func buildSnapshot(version string, res map[string]resource) (*state.Snapshot, error) {
	var (
		ws             []*state.Workload
		ss             []*state.Service
		wNames, sNames []string // resource names, in the order of ws and ss
	)
	for _, name := range slices.Sorted(maps.Keys(res)) {
		switch r := res[name]; {
		case r.w != nil:
			ws, wNames = append(ws, r.w), append(wNames, name)
		case r.svc != nil:
			ss, sNames = append(ss, r.svc), append(sNames, name)
		}
	}
	snap := state.NewSnapshot(version, ws, ss)
	err := snap.Validate()
	if err == nil {
		return snap, nil
	}
	var ve *state.ValidationError
	if !errors.As(err, &ve) {
		return nil, err
	}
	errs := make(Errors, 0, len(ve.Errors))
	for _, fe := range ve.Errors {
		errs = append(errs, resourceProblem(fe, wNames, sNames))
	}
	return nil, errs
}

// listRef matches a reference to an element of the snapshot's lists in a validation
// message, with the uid or name that follows it: `workloads[3] (uid "x")`, `services[1]
// (shop/web.shop.svc.cluster.local)`.
var listRef = regexp.MustCompile(`\b(workloads|services)\[(\d+)\](?: \((?:uid "[^"]*"|[^)]*)\))?`)

// resourceProblem restates a problem of the snapshot, whose path starts at the snapshot's
// lists (workloads[3].addresses[0]), as a problem of the resource at that place.
func resourceProblem(fe *state.FieldError, wNames, sNames []string) *ResourceError {
	name := func(list string, i int) (kind, name string, ok bool) {
		switch {
		case list == "workloads" && i < len(wNames):
			return KindWorkload, wNames[i], true
		case list == "services" && i < len(sNames):
			return KindService, sNames[i], true
		}
		return "", "", false
	}
	detail := listRef.ReplaceAllStringFunc(fe.Detail, func(ref string) string {
		m := listRef.FindStringSubmatch(ref)
		i, _ := strconv.Atoi(m[2])
		if kind, n, ok := name(m[1], i); ok {
			return kind + " " + strconv.Quote(n)
		}
		return ref
	})
	if m := listRef.FindStringSubmatchIndex(fe.Field); m != nil && m[0] == 0 {
		list := fe.Field[m[2]:m[3]]
		i, _ := strconv.Atoi(fe.Field[m[4]:m[5]])
		if kind, n, ok := name(list, i); ok {
			field := strings.TrimPrefix(fe.Field[m[1]:], ".")
			return &ResourceError{Kind: kind, Name: n, Field: field, Detail: detail}
		}
	}
	// Not a path into the lists: report it as it is.
	return &ResourceError{Kind: KindResource, Field: fe.Field, Detail: detail}
}

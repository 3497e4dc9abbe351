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

// resource is one resource in force: a converted workload, service or authorization and the
// version the server gave it.
type resource struct {
	version string
	Resource
}

// buildSnapshot makes the snapshot of version from the resources, and validates it. The
// problems of an invalid snapshot are reported as [Errors] against the resources.
func buildSnapshot(version string, res map[string]resource) (*state.Snapshot, error) {
	var (
		ws    []*state.Workload
		ss    []*state.Service
		as    []*state.Authorization
		names = map[string][]string{} // list → resource names, in the order of ws, ss, as
	)
	for _, name := range slices.Sorted(maps.Keys(res)) {
		switch r := res[name]; {
		case r.Workload != nil:
			ws, names["workloads"] = append(ws, r.Workload), append(names["workloads"], name)
		case r.Service != nil:
			ss, names["services"] = append(ss, r.Service), append(names["services"], name)
		case r.Authorization != nil:
			as, names["authorizations"] = append(as, r.Authorization), append(names["authorizations"], name)
		}
	}
	snap := state.NewSnapshot(version, ws, ss, state.WithAuthorizations(as))
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
		errs = append(errs, resourceProblem(fe, names))
	}
	return nil, errs
}

// listRef matches a reference to an element of the snapshot's lists in a validation
// message, with the uid or name that follows it: `workloads[3] (uid "x")`, `services[1]
// (shop/web.shop.svc.cluster.local)`.
var listRef = regexp.MustCompile(`\b(workloads|services|authorizations)\[(\d+)\](?: \((?:uid "[^"]*"|[^)]*)\))?`)

// listKinds are the resource kinds of the snapshot's lists.
var listKinds = map[string]string{
	"workloads":      KindWorkload,
	"services":       KindService,
	"authorizations": KindAuthorization,
}

// resourceProblem restates a problem of the snapshot, whose path starts at the snapshot's
// lists (workloads[3].addresses[0]), as a problem of the resource at that place; names lists
// the resource names of each list, in the snapshot's input order.
func resourceProblem(fe *state.FieldError, names map[string][]string) *ResourceError {
	name := func(list string, i int) (kind, name string, ok bool) {
		if l := names[list]; i < len(l) {
			return listKinds[list], l[i], true
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

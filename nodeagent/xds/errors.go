package xds

import (
	"fmt"
	"strconv"
	"strings"
)

// Kinds of resource that a [ResourceError] names.
const (
	KindWorkload = "workload"
	KindService  = "service"
	// KindAuthorization is an authorization policy, named "authorization/<namespace>/<name>".
	KindAuthorization = "authorization"
	// KindResource is a resource whose kind is unknown: it could not be decoded, or it sets
	// no workload, service or authorization.
	KindResource = "resource"
)

// ResourceError is one problem of one resource of workload discovery.
type ResourceError struct {
	Kind string // KindWorkload, KindService, KindAuthorization or KindResource
	Name string // the resource's name
	// Field is the path of the field at fault inside the resource, in the JSON names of the
	// protobuf fields, e.g. "addresses[1]" or "ports[0].targetPort"; "" for the resource as a
	// whole.
	Field  string
	Detail string // what is wrong, then how to fix it
}

func (e *ResourceError) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind)
	b.WriteByte(' ')
	b.WriteString(strconv.Quote(e.Name))
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Detail)
	return b.String()
}

// Errors lists the problems found in a resource or in a response, in the order of the
// resource names.
type Errors []*ResourceError

// maxListed bounds the problems that Errors.Error spells out.
const maxListed = 10

// Error returns the problems one per line, at most ten of them.
func (e Errors) Error() string {
	var b strings.Builder
	for i, re := range e {
		if i == maxListed {
			fmt.Fprintf(&b, "\n(and %d more problems)", len(e)-maxListed)
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(re.Error())
	}
	return b.String()
}

// Unwrap returns the problems as errors, for errors.As and errors.Is.
func (e Errors) Unwrap() []error {
	errs := make([]error, len(e))
	for i, re := range e {
		errs[i] = re
	}
	return errs
}

// problems collects the ResourceErrors of one resource.
type problems struct {
	kind, name string
	errs       Errors
}

func (p *problems) add(field, format string, args ...any) {
	p.errs = append(p.errs, &ResourceError{Kind: p.kind, Name: p.name, Field: field, Detail: fmt.Sprintf(format, args...)})
}

// err returns the problems recorded, or nil (an untyped nil) when there are none.
func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	return p.errs
}

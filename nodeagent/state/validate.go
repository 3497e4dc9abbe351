package state

import (
	"fmt"
	"strings"
)

// FieldError is one problem of a configuration: the path of the field at fault, in the
// notation of the configuration file (workloads[3].addresses[0]), and what is wrong with it
// followed by how to fix it.
type FieldError struct {
	Field  string // e.g. "workloads[3].addresses[0]"
	Detail string // e.g. `"10.0.0.x" is not an IP address; write an IPv4 or IPv6 address`
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Detail
	}
	return e.Field + ": " + e.Detail
}

// ValidationError lists every problem found in a configuration, in the order of the input.
type ValidationError struct {
	Errors []*FieldError
}

// maxListed bounds the problems that Error spells out.
const maxListed = 10

// Error returns the problems one per line, at most ten of them.
func (e *ValidationError) Error() string {
	var b strings.Builder
	for i, fe := range e.Errors {
		if i == maxListed {
			fmt.Fprintf(&b, "\n(and %d more problems)", len(e.Errors)-maxListed)
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(fe.Error())
	}
	return b.String()
}

// Unwrap returns the problems as errors, for errors.As and errors.Is.
func (e *ValidationError) Unwrap() []error {
	errs := make([]error, len(e.Errors))
	for i, fe := range e.Errors {
		errs[i] = fe
	}
	return errs
}

// Problems collects FieldErrors. The zero value is ready to use.
type Problems struct {
	errs []*FieldError
}

// Add records that the field at path is wrong; format and args make the detail.
func (p *Problems) Add(path, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{Field: path, Detail: fmt.Sprintf(format, args...)})
}

// Len returns the number of problems recorded.
func (p *Problems) Len() int { return len(p.errs) }

// Err returns a *ValidationError with the problems recorded, or nil when there are none.
func (p *Problems) Err() error {
	if len(p.errs) == 0 {
		return nil
	}
	return &ValidationError{Errors: p.errs}
}

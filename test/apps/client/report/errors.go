package report

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// KindError attaches an explicit kind to an error; ErrorKind reports it.
type KindError struct {
	Kind string
	Err  error
}

// Error implements error.
func (e *KindError) Error() string { return e.Kind + ": " + e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *KindError) Unwrap() error { return e.Err }

// ErrorKind classifies err into a short, stable kind such as "timeout",
// "connection_refused", "connection_reset", "eof", "dns", "canceled" or
// "other". A KindError in the chain takes precedence.
func ErrorKind(err error) string {
	if err == nil {
		return ""
	}
	var ke *KindError
	if errors.As(err, &ke) {
		return ke.Kind
	}
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection_reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken_pipe"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	case errors.As(err, &dnsErr):
		return "dns"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	}
	return "other"
}

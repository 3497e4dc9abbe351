package route

import (
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
)

// fieldError is a configuration error at a field path such as
// virtual_hosts[1].routes[0].match.safe_regex.
func fieldError(path, format string, args ...any) error {
	return fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...))
}

// onlyFields returns an error naming the first populated field of m that is not in allowed:
// the waypoint refuses what it does not implement rather than ignoring it. Fields that only
// carry names, statistics or metadata are listed in allowed by the callers.
func onlyFields(path string, m proto.Message, allowed ...string) error {
	if m == nil {
		return nil
	}
	var bad protoreflect.FieldDescriptor
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		for _, a := range allowed {
			if string(fd.Name()) == a {
				return true
			}
		}
		bad = fd
		return false
	})
	if bad != nil {
		return fieldError(join(path, string(bad.Name())), "not supported by the waypoint; remove it (the configuration is refused rather than served with different behaviour)")
	}
	return nil
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func idx(path, field string, i int) string { return fmt.Sprintf("%s[%d]", join(path, field), i) }

// duration converts a protobuf duration, refusing negative or invalid values.
func duration(path string, d *durationpb.Duration) (time.Duration, error) {
	if err := d.CheckValid(); err != nil {
		return 0, fieldError(path, "invalid duration: %v", err)
	}
	v := d.AsDuration()
	if v < 0 {
		return 0, fieldError(path, "negative duration %v; use a positive duration or 0", v)
	}
	return v, nil
}

// Fraction is a FractionalPercent: Num out of Den.
type Fraction struct {
	Num, Den uint64
}

// Hit draws from rnd and reports whether this request falls into the fraction, as Envoy's
// runtime featureEnabled does with the fraction's default value (random % den < num).
func (f Fraction) Hit(rnd Rand) bool {
	switch {
	case f.Num == 0:
		return false
	case f.Num >= f.Den:
		return true
	}
	return rnd.Uint64N(f.Den) < f.Num
}

func fraction(path string, p *typev3.FractionalPercent) (Fraction, error) {
	if p == nil {
		return Fraction{Num: 0, Den: 100}, nil
	}
	var den uint64
	switch p.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		den = 100
	case typev3.FractionalPercent_TEN_THOUSAND:
		den = 10_000
	case typev3.FractionalPercent_MILLION:
		den = 1_000_000
	default:
		return Fraction{}, fieldError(join(path, "denominator"), "unknown denominator %v; use HUNDRED, TEN_THOUSAND or MILLION", p.GetDenominator())
	}
	return Fraction{Num: min(uint64(p.GetNumerator()), den), Den: den}, nil
}

// runtimeFraction compiles a RuntimeFractionalPercent. The waypoint has no runtime, so the
// default value always applies (as in Envoy when the runtime key is not set); def is used when
// the field is absent.
func runtimeFraction(path string, p *corev3.RuntimeFractionalPercent, def Fraction) (Fraction, error) {
	if p == nil {
		return def, nil
	}
	if p.GetDefaultValue() == nil {
		return Fraction{}, fieldError(join(path, "default_value"), "required; set the percentage")
	}
	return fraction(join(path, "default_value"), p.GetDefaultValue())
}

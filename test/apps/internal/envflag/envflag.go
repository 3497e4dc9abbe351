// Package envflag lets environment variables supply values for flags that
// were not set on the command line.
package envflag

import (
	"flag"
	"fmt"
	"slices"
	"strings"
)

// LookupFunc reports the value of an environment variable; os.LookupEnv
// satisfies it.
type LookupFunc func(key string) (string, bool)

// Apply sets each flag of fs named in bindings (flag name to environment
// variable) from its environment variable, unless the flag was set on the
// command line or the variable is unset or empty. Call it after fs.Parse.
func Apply(fs *flag.FlagSet, bindings map[string]string, lookup LookupFunc) error {
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, env := range bindings {
		if fs.Lookup(name) == nil {
			return fmt.Errorf("envflag: no flag %q for %s", name, env)
		}
		if set[name] {
			continue
		}
		v, ok := lookup(env)
		if !ok || v == "" {
			continue
		}
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("envflag: %s=%q: %w", env, v, err)
		}
	}
	return nil
}

// ParseInterspersed parses args with fs, allowing positional arguments to
// appear between flags (as in "client http URL -n 10"). It returns the
// positional arguments in order. Arguments after "--" are all positional.
func ParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		// Split off a literal "--" so that everything after it stays
		// positional even though we re-parse.
		rest := args
		var tail []string
		for i, a := range args {
			if a == "--" {
				rest, tail = args[:i], args[i+1:]
				break
			}
		}
		if err := fs.Parse(rest); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return append(pos, tail...), nil
		}
		pos = append(pos, fs.Arg(0))
		args = slices.Clone(fs.Args()[1:])
		if tail != nil {
			args = append(append(args, "--"), tail...)
		}
	}
}

// List is a flag.Value collecting strings from repeated flags; each value is
// also split on commas, so "-call a,b -call c" yields [a b c].
type List []string

// String implements flag.Value.
func (l *List) String() string { return strings.Join(*l, ",") }

// Set implements flag.Value.
func (l *List) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// Multi is a flag.Value collecting each occurrence of a repeated flag
// verbatim (no comma splitting), for values such as HTTP headers.
type Multi []string

// String implements flag.Value.
func (m *Multi) String() string { return strings.Join(*m, "; ") }

// Set implements flag.Value.
func (m *Multi) Set(v string) error {
	*m = append(*m, v)
	return nil
}

// Command weft-tools builds the control-plane and test tools (kube-apiserver,
// kube-controller-manager, kube-scheduler, kube-proxy, kubectl, etcd, CoreDNS
// and fortio) into a cache directory, unless they are already there, and
// prints their paths.
//
// Usage:
//
//	go run ./test/controlplane/cmd/weft-tools [-cache dir]
//
// Without -cache the directory is $WEFT_TOOLS_CACHE or <repo>/.cache/tools.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/weftmesh/weft/test/controlplane"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "weft-tools: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weft-tools", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cache := fs.String("cache", "", "tool cache directory (default $WEFT_TOOLS_CACHE or <repo>/.cache/tools)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	dir := *cache
	if dir == "" {
		var err error
		if dir, err = controlplane.DefaultCacheDir(); err != nil {
			return err
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bins, err := controlplane.Ensure(ctx, dir, stderr)
	if err != nil {
		return err
	}
	for _, b := range []struct{ name, path string }{
		{"kube-apiserver", bins.KubeAPIServer},
		{"kube-controller-manager", bins.KubeControllerManager},
		{"kube-scheduler", bins.KubeScheduler},
		{"kube-proxy", bins.KubeProxy},
		{"kubectl", bins.Kubectl},
		{"etcd", bins.Etcd},
		{"coredns", bins.CoreDNS},
		{"fortio", bins.Fortio},
	} {
		fmt.Fprintf(stdout, "%-24s %s\n", b.name, b.path)
	}
	return nil
}

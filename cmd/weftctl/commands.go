package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/explain"
	"github.com/weftmesh/weft/controller/translate"
)

// flags are weftctl's global flags.
type flags struct {
	kubeconfig, context string
	namespace           string
	output              string
	rootNamespace       string
	trustDomain         string
	timeout             time.Duration
}

// newRootCommand returns weftctl's commands; connect makes the clients (tests pass fakes).
func newRootCommand(connect connectFunc) *cobra.Command {
	f := &flags{}
	root := &cobra.Command{
		Use:           "weftctl",
		Short:         "Inspect a Weft mesh (which policies apply to a workload, and why) and manage its waypoints",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	pf := root.PersistentFlags()
	pf.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
	pf.StringVar(&f.context, "context", "", "kubeconfig context (default: the current context)")
	pf.StringVarP(&f.namespace, "namespace", "n", "", "the namespace (default: the context's namespace, else default)")
	pf.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	pf.StringVar(&f.rootNamespace, "root-namespace", "istio-system", "namespace of mesh-wide policies (the controller's -root-namespace)")
	pf.StringVar(&f.trustDomain, "trust-domain", api.DefaultTrustDomain, "SPIFFE trust domain (the controller's -trust-domain)")
	pf.DurationVar(&f.timeout, "request-timeout", 15*time.Second, "timeout of each request to the apiserver")

	authz := &cobra.Command{
		Use:   "authz",
		Short: "AuthorizationPolicy commands",
	}
	authz.AddCommand(&cobra.Command{
		Use:   "check <pod>",
		Short: "Show the AuthorizationPolicies that apply to a pod's workload, why, and how far Weft enforces them",
		Long: `Show the AuthorizationPolicies that apply to a pod's workload: mesh-wide (root namespace),
namespace-wide, by selector (with the labels that matched) or by targetRefs (which need a
waypoint); whether the node agents enforce each one, fully or in part (from the policy's
status condition); and the L4 checks of each rule that remain. The answer comes from the
controller's own translation of the cluster's objects.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, connect, f, args[0], func(in translate.Input, o explain.Options, notes []string, w io.Writer) error {
				r, err := explain.Authz(in, o)
				if err != nil {
					return err
				}
				r.Notes = append(r.Notes, notes...)
				if f.output == "json" {
					return writeJSON(w, r)
				}
				return explain.WriteAuthz(w, r)
			})
		},
	})
	tls := &cobra.Command{
		Use:   "tls-check <pod>",
		Short: "Show the effective mutual TLS mode (PeerAuthentication) of each port of a pod, and which policy decided it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, connect, f, args[0], func(in translate.Input, o explain.Options, notes []string, w io.Writer) error {
				r, err := explain.TLS(in, o)
				if err != nil {
					return err
				}
				r.Notes = append(r.Notes, notes...)
				if f.output == "json" {
					return writeJSON(w, r)
				}
				return explain.WriteTLS(w, r)
			})
		},
	}
	root.AddCommand(authz, tls, newWaypointCommand(connect, f), newAnalyzeCommand(connect, f))
	return root
}

// run reads the cluster and hands the input to do.
func run(cmd *cobra.Command, connect connectFunc, f *flags, pod string,
	do func(translate.Input, explain.Options, []string, io.Writer) error) error {
	if f.output != "table" && f.output != "json" {
		return fmt.Errorf("-o %s: the output format is table or json", f.output)
	}
	c, err := connect(f)
	if err != nil {
		return err
	}
	namespace := f.namespace
	if namespace == "" {
		namespace = c.namespace
	}
	if namespace == "" {
		namespace = "default"
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 4*f.timeout)
	defer cancel()
	in, notes, err := load(ctx, c)
	if err != nil {
		return err
	}
	o := explain.Options{
		Translate: translate.Options{TrustDomain: f.trustDomain, RootNamespace: f.rootNamespace},
		Namespace: namespace,
		Pod:       pod,
	}
	return do(in, o, notes, cmd.OutOrStdout())
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

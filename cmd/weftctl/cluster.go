package main

import (
	"context"
	"errors"
	"fmt"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/weftmesh/weft/controller/translate"
)

// clients reach one cluster.
type clients struct {
	kube  kubernetes.Interface
	istio istioclient.Interface
	// gateway reads and writes Gateway API objects (waypoints).
	gateway gatewayclient.Interface
	// server is the apiserver's URL, for messages.
	server string
	// namespace is the kubeconfig context's namespace, empty when it names none.
	namespace string
}

type connectFunc func(*flags) (*clients, error)

// connectKubeconfig makes clients as kubectl does: --kubeconfig, else $KUBECONFIG, else
// ~/.kube/config (else the in-cluster configuration).
func connectKubeconfig(f *flags) (*clients, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: f.context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, errors.New("no kubeconfig found: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config")
		}
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	c := &clients{server: cfg.Host}
	if ns, explicit, err := cc.Namespace(); err == nil && explicit {
		c.namespace = ns
	}
	cfg.Timeout = f.timeout
	cfg.UserAgent = "weftctl"
	if c.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	if c.istio, err = istioclient.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	if c.gateway, err = gatewayclient.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return c, nil
}

// load lists what the controller watches (see controller/cluster) into a translate.Input. A
// PeerAuthentication or AuthorizationPolicy list that fails with NotFound (the Istio CRDs are
// not installed) counts as none, with a note.
func load(ctx context.Context, c *clients) (translate.Input, []string, error) {
	var in translate.Input
	var notes []string
	opts := metav1.ListOptions{}

	ns, err := c.kube.CoreV1().Namespaces().List(ctx, opts)
	if err != nil {
		return in, nil, listError(c, "namespaces", err)
	}
	for i := range ns.Items {
		in.Namespaces = append(in.Namespaces, &ns.Items[i])
	}
	pods, err := c.kube.CoreV1().Pods("").List(ctx, opts)
	if err != nil {
		return in, nil, listError(c, "pods", err)
	}
	for i := range pods.Items {
		in.Pods = append(in.Pods, &pods.Items[i])
	}
	svcs, err := c.kube.CoreV1().Services("").List(ctx, opts)
	if err != nil {
		return in, nil, listError(c, "services", err)
	}
	for i := range svcs.Items {
		in.Services = append(in.Services, &svcs.Items[i])
	}
	eps, err := c.kube.DiscoveryV1().EndpointSlices("").List(ctx, opts)
	if err != nil {
		return in, nil, listError(c, "endpointslices", err)
	}
	for i := range eps.Items {
		in.EndpointSlices = append(in.EndpointSlices, &eps.Items[i])
	}

	const absent = "%s (security.istio.io/v1) is not installed in the cluster: treated as none. Install the CRDs with kubectl apply --server-side -f deploy/crds/istio.yaml"
	pas, err := c.istio.SecurityV1().PeerAuthentications("").List(ctx, opts)
	switch {
	case apierrors.IsNotFound(err):
		notes = append(notes, fmt.Sprintf(absent, "PeerAuthentication"))
	case err != nil:
		return in, nil, listError(c, "peerauthentications.security.istio.io", err)
	default:
		in.PeerAuthentications = pas.Items
	}
	aps, err := c.istio.SecurityV1().AuthorizationPolicies("").List(ctx, opts)
	switch {
	case apierrors.IsNotFound(err):
		notes = append(notes, fmt.Sprintf(absent, "AuthorizationPolicy"))
	case err != nil:
		return in, nil, listError(c, "authorizationpolicies.security.istio.io", err)
	default:
		in.AuthorizationPolicies = aps.Items
	}
	// Waypoints (Gateways): without the Gateway API there are none.
	if c.gateway != nil {
		gws, err := c.gateway.GatewayV1().Gateways("").List(ctx, opts)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return in, nil, listError(c, "gateways.gateway.networking.k8s.io", err)
		default:
			for i := range gws.Items {
				in.Gateways = append(in.Gateways, &gws.Items[i])
			}
		}
	}
	return in, notes, nil
}

// listError tells an unreachable cluster (no answer from the apiserver) from a refusal.
func listError(c *clients, what string, err error) error {
	var status apierrors.APIStatus
	switch {
	case !errors.As(err, &status):
		return fmt.Errorf("cannot reach the cluster at %s: %v; check --kubeconfig (or KUBECONFIG, --context) and that the apiserver is running", c.server, err)
	case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		return fmt.Errorf("not allowed to list %s: %v; weftctl needs to list namespaces, pods, services, endpointslices, peerauthentications and authorizationpolicies (analyze also virtualservices, destinationrules, serviceentries, gateways and httproutes, and to get deployments)", what, err)
	}
	return fmt.Errorf("list %s: %w", what, err)
}

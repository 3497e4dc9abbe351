// Package cluster watches the Kubernetes objects that the mesh is built from with client-go
// shared informers: Namespaces, Pods, Services, EndpointSlices and Nodes, Istio's
// PeerAuthentication and AuthorizationPolicy through istio.io/client-go, Istio's
// VirtualService and DestinationRule (the waypoints' traffic rules) and Gateway API Gateways
// (the waypoints' resource) when their CRDs are installed. It tells when anything changed
// and hands out the current objects as a [translate.Input].
package cluster

import (
	"context"
	"fmt"
	"maps"

	"google.golang.org/protobuf/proto"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	istioinformers "istio.io/client-go/pkg/informers/externalversions"
	networkinglisters "istio.io/client-go/pkg/listers/networking/v1"
	istiolisters "istio.io/client-go/pkg/listers/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gatewayinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"
	gatewaylisters "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/envoy"
	"github.com/weftmesh/weft/controller/translate"
)

// Cluster is the informer-backed view of the cluster.
type Cluster struct {
	kube    informers.SharedInformerFactory
	istio   istioinformers.SharedInformerFactory
	gateway gatewayinformers.SharedInformerFactory // nil without the Gateway API CRDs
	// waypointKube watches the Deployments deployed for Gateways (labelled with the gateway
	// name); nil without the Gateway API CRDs.
	waypointKube informers.SharedInformerFactory
	deployments  appslisters.DeploymentLister

	namespaces    corelisters.NamespaceLister
	pods          corelisters.PodLister
	services      corelisters.ServiceLister
	slices        discoverylisters.EndpointSliceLister
	nodes         corelisters.NodeLister
	peerAuths     istiolisters.PeerAuthenticationLister
	authzPolicies istiolisters.AuthorizationPolicyLister
	gateways      gatewaylisters.GatewayLister
	virtualSvcs   networkinglisters.VirtualServiceLister  // nil without the CRD
	destRules     networkinglisters.DestinationRuleLister // nil without the CRD
	svcEntries    networkinglisters.ServiceEntryLister    // nil without the CRD
	httpRoutes    gatewaylisters.HTTPRouteLister          // nil without the CRD
	podInformer   cache.SharedIndexInformer
	changed       chan struct{}
	synced        []cache.InformerSynced
}

// New returns a Cluster over the clients; call Start, then WaitForSync. gateway may be nil;
// Gateways and HTTPRoutes are watched only when the apiserver serves them in
// gateway.networking.k8s.io/v1, VirtualServices, DestinationRules and ServiceEntries only when
// it serves them in networking.istio.io/v1.
func New(kube kubernetes.Interface, istio istioclient.Interface, gateway gatewayclient.Interface) (*Cluster, error) {
	c := &Cluster{
		kube:    informers.NewSharedInformerFactory(kube, 0),
		istio:   istioinformers.NewSharedInformerFactory(istio, 0),
		changed: make(chan struct{}, 1),
	}
	core := c.kube.Core().V1()
	sec := c.istio.Security().V1()
	watch := []struct {
		kind string
		inf  cache.SharedIndexInformer
	}{
		{"Namespace", core.Namespaces().Informer()},
		{"Pod", core.Pods().Informer()},
		{"Service", core.Services().Informer()},
		{"EndpointSlice", c.kube.Discovery().V1().EndpointSlices().Informer()},
		{"Node", core.Nodes().Informer()},
		{"PeerAuthentication", sec.PeerAuthentications().Informer()},
		{"AuthorizationPolicy", sec.AuthorizationPolicies().Informer()},
	}
	type watched = struct {
		kind string
		inf  cache.SharedIndexInformer
	}
	gatewayServed := gateway != nil && served(kube, gatewayv1.GroupVersion.String(), "gateways")
	httpRouteServed := gateway != nil && served(kube, gatewayv1.GroupVersion.String(), "httproutes")
	if gatewayServed || httpRouteServed {
		c.gateway = gatewayinformers.NewSharedInformerFactory(gateway, 0)
	}
	if gatewayServed {
		gw := c.gateway.Gateway().V1().Gateways()
		c.gateways = gw.Lister()
		watch = append(watch, watched{"Gateway", gw.Informer()})
		// The waypoints' Deployments (their availability is the Gateways' Programmed status).
		c.waypointKube = informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = api.LabelGatewayName
		}))
		deps := c.waypointKube.Apps().V1().Deployments()
		c.deployments = deps.Lister()
		watch = append(watch, watched{"Deployment", deps.Informer()})
	}
	if httpRouteServed {
		hr := c.gateway.Gateway().V1().HTTPRoutes()
		c.httpRoutes = hr.Lister()
		watch = append(watch, watched{"HTTPRoute", hr.Informer()})
	}
	netv1 := c.istio.Networking().V1()
	if served(kube, networkingv1.SchemeGroupVersion.String(), "virtualservices") {
		c.virtualSvcs = netv1.VirtualServices().Lister()
		watch = append(watch, watched{"VirtualService", netv1.VirtualServices().Informer()})
	}
	if served(kube, networkingv1.SchemeGroupVersion.String(), "destinationrules") {
		c.destRules = netv1.DestinationRules().Lister()
		watch = append(watch, watched{"DestinationRule", netv1.DestinationRules().Informer()})
	}
	if served(kube, networkingv1.SchemeGroupVersion.String(), "serviceentries") {
		c.svcEntries = netv1.ServiceEntries().Lister()
		watch = append(watch, watched{"ServiceEntry", netv1.ServiceEntries().Informer()})
	}
	for _, w := range watch {
		reg, err := w.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(any) { c.notify() },
			UpdateFunc: func(old, cur any) {
				if !statusOnly(old, cur) {
					c.notify()
				}
			},
			DeleteFunc: func(any) { c.notify() },
		})
		if err != nil {
			return nil, fmt.Errorf("watch %s: %w", w.kind, err)
		}
		c.synced = append(c.synced, reg.HasSynced)
	}
	c.podInformer = core.Pods().Informer()
	c.namespaces = core.Namespaces().Lister()
	c.pods = core.Pods().Lister()
	c.services = core.Services().Lister()
	c.slices = c.kube.Discovery().V1().EndpointSlices().Lister()
	c.nodes = core.Nodes().Lister()
	c.peerAuths = sec.PeerAuthentications().Lister()
	c.authzPolicies = sec.AuthorizationPolicies().Lister()
	return c, nil
}

// PodInformer returns the shared pod informer (the CA indexes it by node).
func (c *Cluster) PodInformer() cache.SharedIndexInformer { return c.podInformer }

// Start starts the informers; they stop when ctx is done.
func (c *Cluster) Start(ctx context.Context) {
	c.kube.Start(ctx.Done())
	c.istio.Start(ctx.Done())
	if c.gateway != nil {
		c.gateway.Start(ctx.Done())
	}
	if c.waypointKube != nil {
		c.waypointKube.Start(ctx.Done())
	}
}

// WaitForSync blocks until every informer has listed its objects, or ctx is done.
func (c *Cluster) WaitForSync(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("informers did not sync: %w", context.Cause(ctx))
	}
	return nil
}

// Changed receives a value after objects changed. Changes coalesce: one receive may stand for
// many changes.
func (c *Cluster) Changed() <-chan struct{} { return c.changed }

func (c *Cluster) notify() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// Input returns the current objects.
func (c *Cluster) Input() (translate.Input, error) {
	var in translate.Input
	var err error
	all := labels.Everything()
	if in.Namespaces, err = c.namespaces.List(all); err != nil {
		return in, err
	}
	if in.Pods, err = c.pods.List(all); err != nil {
		return in, err
	}
	if in.Services, err = c.services.List(all); err != nil {
		return in, err
	}
	if in.EndpointSlices, err = c.slices.List(all); err != nil {
		return in, err
	}
	if in.PeerAuthentications, err = c.peerAuths.List(all); err != nil {
		return in, err
	}
	if in.AuthorizationPolicies, err = c.authzPolicies.List(all); err != nil {
		return in, err
	}
	if in.Gateways, err = c.Gateways(); err != nil {
		return in, err
	}
	return in, nil
}

// statusOnly reports whether an update changed only an object's status — the controller
// writes the status of waypoint Gateways, AuthorizationPolicies, VirtualServices,
// DestinationRules and HTTPRoutes after each push — so nothing the translation reads changed
// and no rebuild is due. A custom resource's spec changes bump its generation.
func statusOnly(old, cur any) bool {
	o, ok1 := old.(metav1.Object)
	n, ok2 := cur.(metav1.Object)
	if !ok1 || !ok2 {
		return false
	}
	switch cur := cur.(type) {
	case *gatewayv1.Gateway, *gatewayv1.HTTPRoute, *networkingv1.VirtualService, *networkingv1.DestinationRule:
		if n.GetGeneration() == 0 { // not set by an apiserver (a fake client): compare nothing
			return false
		}
	case *securityv1.AuthorizationPolicy:
		o, ok := old.(*securityv1.AuthorizationPolicy)
		if !ok || !proto.Equal(&o.Spec, &cur.Spec) {
			return false
		}
	default:
		return false
	}
	return o.GetGeneration() == n.GetGeneration() &&
		maps.Equal(o.GetLabels(), n.GetLabels()) && maps.Equal(o.GetAnnotations(), n.GetAnnotations())
}

// Nodes returns the names of the cluster's nodes.
func (c *Cluster) Nodes() ([]string, error) {
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	return names, nil
}

// AuthorizationPolicy returns one AuthorizationPolicy from the informer's cache (read-only).
func (c *Cluster) AuthorizationPolicy(namespace, name string) (*securityv1.AuthorizationPolicy, error) {
	return c.authzPolicies.AuthorizationPolicies(namespace).Get(name)
}

// Gateways returns the Gateway API Gateways (waypoints are Gateways of class istio-waypoint;
// the waypoint issue routes traffic through them), none when the CRD is not installed.
func (c *Cluster) Gateways() ([]*gatewayv1.Gateway, error) {
	if c.gateways == nil {
		return nil, nil
	}
	return c.gateways.List(labels.Everything())
}

// Deployment returns a Deployment deployed for a Gateway (labelled with its name) from the
// informer's cache; NotFound for any other, and without the Gateway API CRDs.
func (c *Cluster) Deployment(namespace, name string) (*appsv1.Deployment, error) {
	if c.deployments == nil {
		return nil, apierrors.NewNotFound(appsv1.Resource("deployments"), name)
	}
	return c.deployments.Deployments(namespace).Get(name)
}

// Service returns a Service from the informer's cache.
func (c *Cluster) Service(namespace, name string) (*corev1.Service, error) {
	return c.services.Services(namespace).Get(name)
}

// EnvoyInput returns the objects of namespace that a waypoint there is configured from
// ([envoy.Build]).
func (c *Cluster) EnvoyInput(namespace string) (envoy.Input, error) {
	in := envoy.Input{Namespace: namespace}
	var err error
	all := labels.Everything()
	if in.Services, err = c.services.Services(namespace).List(all); err != nil {
		return in, err
	}
	if in.EndpointSlices, err = c.slices.EndpointSlices(namespace).List(all); err != nil {
		return in, err
	}
	if in.Pods, err = c.pods.Pods(namespace).List(all); err != nil {
		return in, err
	}
	if c.virtualSvcs != nil {
		if in.VirtualServices, err = c.virtualSvcs.VirtualServices(namespace).List(all); err != nil {
			return in, err
		}
	}
	if c.destRules != nil {
		if in.DestinationRules, err = c.destRules.DestinationRules(namespace).List(all); err != nil {
			return in, err
		}
	}
	if c.svcEntries != nil {
		if in.ServiceEntries, err = c.svcEntries.ServiceEntries(namespace).List(all); err != nil {
			return in, err
		}
	}
	if c.httpRoutes != nil {
		if in.HTTPRoutes, err = c.httpRoutes.HTTPRoutes(namespace).List(all); err != nil {
			return in, err
		}
	}
	return in, nil
}

// served reports whether the apiserver serves resource in groupVersion.
func served(kube kubernetes.Interface, groupVersion, resource string) bool {
	list, err := kube.Discovery().ServerResourcesForGroupVersion(groupVersion)
	if err != nil {
		return false
	}
	for _, r := range list.APIResources {
		if r.Name == resource {
			return true
		}
	}
	return false
}

package ca

import (
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/api"
)

// Names of the Secrets the CA reads and writes in its namespace, and their keys.
const (
	// PluginSecret is the Secret of a user-supplied intermediate CA, in Istio's plug-in format.
	PluginSecret = "cacerts"
	// SelfSignedSecret is the Secret that keeps the self-signed root when PluginSecret is absent.
	SelfSignedSecret = "weft-ca-secret"

	// KeyCACert and KeyCAKey hold the PEM certificate the CA signs with and its private key, in
	// both Secrets.
	KeyCACert = "ca-cert.pem"
	KeyCAKey  = "ca-key.pem"
	// KeyRootCert holds the PEM roots to trust (PluginSecret only); during a root rotation, the
	// old and the new roots.
	KeyRootCert = "root-cert.pem"
	// KeyCertChain holds the PEM chain from the CA certificate to the root (PluginSecret only).
	KeyCertChain = "cert-chain.pem"

	// RetiredRootsSecret is the Secret in which the CA records the roots that left the trust set
	// but must stay in the published bundle until KeepUntil, and the last trust set.
	RetiredRootsSecret = "weft-ca-retired-roots"
	// KeyRetiredRoots holds, in RetiredRootsSecret, a JSON array of
	// {"keepUntil": RFC 3339 time, "certificate": PEM certificate}.
	KeyRetiredRoots = "retired-roots.json"
	// KeyTrustedRoots holds, in RetiredRootsSecret, the PEM roots of the trust set when it was
	// last written, to retire those that left it while no controller was running.
	KeyTrustedRoots = "trusted-roots.pem"
)

// Defaults of [Options].
const (
	DefaultTTL        = 24 * time.Hour
	DefaultMaxTTL     = 24 * time.Hour
	DefaultRootTTL    = 10 * 365 * 24 * time.Hour
	DefaultServingTTL = 24 * time.Hour
	// DefaultNodeAgentNamespace and DefaultNodeAgentServiceAccount name the node agents'
	// service account.
	DefaultNodeAgentNamespace      = "weft-system"
	DefaultNodeAgentServiceAccount = "weft-nodeagent"
	// DefaultTokenCacheTTL bounds how long a positive TokenReview answer is reused.
	DefaultTokenCacheTTL = time.Minute
)

// Options configures a [CA]. Client, Namespace and Pods are required.
type Options struct {
	// Client reads and writes the Secrets and the ConfigMap of Namespace, reviews tokens and
	// looks up pods.
	Client kubernetes.Interface
	// Namespace is the controller's namespace, where the Secrets and the root ConfigMap live.
	Namespace string
	// TrustDomain is the trust domain of every identity; zero means api.DefaultTrustDomain.
	TrustDomain spiffeid.TrustDomain
	// Pods lists the pods scheduled on a node, for authorization; see [NewInformerPods].
	Pods PodLister

	// DefaultTTL is the lifetime of a leaf when the caller asks for none; zero means 24 h.
	DefaultTTL time.Duration
	// MaxTTL caps the lifetime a caller may ask for; zero means 24 h. No leaf outlives the
	// certificate that signs it.
	MaxTTL time.Duration
	// RootTTL is the lifetime of a self-signed root created by the CA; zero means 10 years.
	RootTTL time.Duration

	// ServingDNSNames and ServingIPs are the subject alternative names of the controller's TLS
	// serving certificate, e.g. weft-controller.weft-system.svc. At least one is required.
	ServingDNSNames []string
	ServingIPs      []net.IP
	// ServingTTL is the lifetime of the serving certificate, renewed at half life; zero means
	// 24 h.
	ServingTTL time.Duration

	// NodeAgentNamespace and NodeAgentServiceAccount name the node agents' service account;
	// empty means weft-system and weft-nodeagent.
	NodeAgentNamespace      string
	NodeAgentServiceAccount string
	// TokenCacheTTL bounds how long a positive TokenReview answer is reused (never beyond the
	// token's expiry); zero means 1 min, negative disables the cache.
	TokenCacheTTL time.Duration

	// Logger receives the CA's logs; nil means slog.Default().
	Logger *slog.Logger

	// now is the clock of root retirement; nil means time.Now (tests set it).
	now func() time.Time
}

func (o Options) withDefaults() (Options, error) {
	if o.Client == nil {
		return o, errors.New("ca: nil Kubernetes client")
	}
	if o.Namespace == "" {
		return o, errors.New("ca: empty namespace")
	}
	if o.Pods == nil {
		return o, errors.New("ca: nil pod lister")
	}
	if len(o.ServingDNSNames) == 0 && len(o.ServingIPs) == 0 {
		return o, errors.New("ca: no DNS name or IP for the serving certificate")
	}
	if o.TrustDomain.IsZero() {
		o.TrustDomain = spiffeid.RequireTrustDomainFromString(api.DefaultTrustDomain)
	}
	if o.DefaultTTL <= 0 {
		o.DefaultTTL = DefaultTTL
	}
	if o.MaxTTL <= 0 {
		o.MaxTTL = DefaultMaxTTL
	}
	o.DefaultTTL = min(o.DefaultTTL, o.MaxTTL)
	if o.RootTTL <= 0 {
		o.RootTTL = DefaultRootTTL
	}
	if o.ServingTTL <= 0 {
		o.ServingTTL = DefaultServingTTL
	}
	if o.NodeAgentNamespace == "" {
		o.NodeAgentNamespace = DefaultNodeAgentNamespace
	}
	if o.NodeAgentServiceAccount == "" {
		o.NodeAgentServiceAccount = DefaultNodeAgentServiceAccount
	}
	if o.TokenCacheTTL == 0 {
		o.TokenCacheTTL = DefaultTokenCacheTTL
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.now == nil {
		o.now = time.Now
	}
	return o, nil
}

package ca

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/api"
)

// Keys of a TokenReview's user.extra that name the pod a token is bound to and its node.
const (
	ExtraPodName  = "authentication.kubernetes.io/pod-name"
	ExtraPodUID   = "authentication.kubernetes.io/pod-uid"
	ExtraNodeName = "authentication.kubernetes.io/node-name"
)

// maxCachedTokens bounds the token cache; past it, expired entries are dropped, then all.
const maxCachedTokens = 10000

// Caller is an authenticated caller: a Kubernetes service account and, for a token bound to a
// pod, that pod and its node.
type Caller struct {
	Namespace      string
	ServiceAccount string
	// PodName and PodUID name the pod the token is bound to (in Namespace); empty for a token
	// not bound to a pod.
	PodName string
	PodUID  string
	// NodeName is the node of that pod: from the token when the apiserver put it there, else
	// from the pod's spec.nodeName. Empty when unknown.
	NodeName string
}

// String names the caller for messages, e.g. "weft-system/weft-nodeagent (pod
// weft-system/weft-nodeagent-x on node node-a)".
func (c *Caller) String() string {
	s := c.Namespace + "/" + c.ServiceAccount
	switch {
	case c.PodName != "" && c.NodeName != "":
		s += fmt.Sprintf(" (pod %s/%s on node %s)", c.Namespace, c.PodName, c.NodeName)
	case c.PodName != "":
		s += fmt.Sprintf(" (pod %s/%s)", c.Namespace, c.PodName)
	}
	return s
}

// LogValue implements slog.LogValuer.
func (c *Caller) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("sa", c.Namespace+"/"+c.ServiceAccount)}
	if c.PodName != "" {
		attrs = append(attrs, slog.String("pod", c.Namespace+"/"+c.PodName))
	}
	if c.NodeName != "" {
		attrs = append(attrs, slog.String("node", c.NodeName))
	}
	return slog.GroupValue(attrs...)
}

// AuthenticatorOptions configures an [Authenticator]. Client is required.
type AuthenticatorOptions struct {
	// Client creates TokenReviews and, when Pods does not know a caller's pod, reads it.
	Client kubernetes.Interface
	// Audience is the audience tokens must carry; empty means api.TokenAudience.
	Audience string
	// Pods, when set, is asked first for the pod a token is bound to.
	Pods PodLister
	// CacheTTL bounds how long a positive answer is reused (never beyond the token's expiry);
	// zero means 1 min, negative disables the cache.
	CacheTTL time.Duration
}

// Authenticator authenticates gRPC callers by the service-account token in their
// "authorization: Bearer <token>" metadata, with a TokenReview. It is safe for concurrent use;
// the controller's xDS server shares the CA's (see [CA.Authenticator]).
type Authenticator struct {
	client   kubernetes.Interface
	audience string
	pods     PodLister
	cacheTTL time.Duration
	now      func() time.Time

	mu    sync.Mutex
	cache map[[sha256.Size]byte]cachedCaller
}

type cachedCaller struct {
	caller Caller
	until  time.Time
}

// NewAuthenticator returns an Authenticator.
func NewAuthenticator(opts AuthenticatorOptions) (*Authenticator, error) {
	if opts.Client == nil {
		return nil, errors.New("ca: authenticator: nil Kubernetes client")
	}
	if opts.Audience == "" {
		opts.Audience = api.TokenAudience
	}
	if opts.CacheTTL == 0 {
		opts.CacheTTL = DefaultTokenCacheTTL
	}
	return &Authenticator{
		client:   opts.Client,
		audience: opts.Audience,
		pods:     opts.Pods,
		cacheTTL: opts.CacheTTL,
		now:      time.Now,
		cache:    make(map[[sha256.Size]byte]cachedCaller),
	}, nil
}

// Authenticate returns the caller of the gRPC request whose incoming context is ctx. Its errors
// are gRPC status errors: UNAUTHENTICATED when the token is missing, invalid, for another
// audience or not a service account's; UNAVAILABLE when the TokenReview could not be made.
func (a *Authenticator) Authenticate(ctx context.Context) (*Caller, error) {
	token, err := bearerToken(ctx)
	if err != nil {
		return nil, err
	}
	return a.AuthenticateToken(ctx, token)
}

// AuthenticateToken is Authenticate for a token already taken from the request.
func (a *Authenticator) AuthenticateToken(ctx context.Context, token string) (*Caller, error) {
	if token == "" {
		return nil, status.Error(codes.Unauthenticated, "empty bearer token")
	}
	key := sha256.Sum256([]byte(token))
	now := a.now()
	if c, ok := a.cached(key, now); ok {
		return &c, nil
	}
	tr, err := a.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{a.audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "token review failed: %v", err)
	}
	st := tr.Status
	if !st.Authenticated {
		reason := st.Error
		if reason == "" {
			reason = "not authenticated"
		}
		return nil, status.Errorf(codes.Unauthenticated, "token rejected by the token review: %s", reason)
	}
	if !slices.Contains(st.Audiences, a.audience) {
		return nil, status.Errorf(codes.Unauthenticated, "token is not for audience %q (token review audiences: %q)", a.audience, st.Audiences)
	}
	ns, sa, ok := splitServiceAccount(st.User.Username)
	if !ok {
		return nil, status.Errorf(codes.Unauthenticated, "caller %q is not a service account", st.User.Username)
	}
	c := Caller{
		Namespace:      ns,
		ServiceAccount: sa,
		PodName:        extra(st.User, ExtraPodName),
		PodUID:         extra(st.User, ExtraPodUID),
		NodeName:       extra(st.User, ExtraNodeName),
	}
	if c.NodeName == "" && c.PodName != "" {
		if c.NodeName, err = a.podNode(ctx, c); err != nil {
			return nil, err
		}
	}
	a.store(key, c, now, tokenExpiry(token))
	return &c, nil
}

// podNode returns the node of the pod c's token is bound to, or "" if it is not scheduled.
func (a *Authenticator) podNode(ctx context.Context, c Caller) (string, error) {
	var pod *corev1.Pod
	if a.pods != nil {
		p, err := a.pods.Pod(c.Namespace, c.PodName)
		if err == nil {
			pod = p
		}
	}
	if pod == nil {
		p, err := a.client.CoreV1().Pods(c.Namespace).Get(ctx, c.PodName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return "", status.Errorf(codes.Unauthenticated, "token is bound to pod %s/%s, which does not exist", c.Namespace, c.PodName)
		case err != nil:
			return "", status.Errorf(codes.Unavailable, "looking up pod %s/%s: %v", c.Namespace, c.PodName, err)
		}
		pod = p
	}
	if c.PodUID != "" && string(pod.UID) != c.PodUID {
		return "", status.Errorf(codes.Unauthenticated, "token is bound to pod %s/%s with uid %s, which no longer exists", c.Namespace, c.PodName, c.PodUID)
	}
	return pod.Spec.NodeName, nil
}

func (a *Authenticator) cached(key [sha256.Size]byte, now time.Time) (Caller, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.cache[key]
	if !ok {
		return Caller{}, false
	}
	if !now.Before(e.until) {
		delete(a.cache, key)
		return Caller{}, false
	}
	return e.caller, true
}

func (a *Authenticator) store(key [sha256.Size]byte, c Caller, now, exp time.Time) {
	if a.cacheTTL < 0 {
		return
	}
	until := now.Add(a.cacheTTL)
	if !exp.IsZero() && exp.Before(until) {
		until = exp
	}
	if !now.Before(until) {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache) >= maxCachedTokens {
		for k, e := range a.cache {
			if !now.Before(e.until) {
				delete(a.cache, k)
			}
		}
		if len(a.cache) >= maxCachedTokens {
			clear(a.cache)
		}
	}
	a.cache[key] = cachedCaller{caller: c, until: until}
}

// bearerToken returns the token of the "authorization: Bearer <token>" metadata of ctx.
func bearerToken(ctx context.Context) (string, error) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "no authorization metadata")
	}
	vals := md.Get("authorization")
	switch len(vals) {
	case 0:
		return "", status.Error(codes.Unauthenticated, `no "authorization: Bearer <token>" metadata`)
	case 1:
	default:
		return "", status.Error(codes.Unauthenticated, "more than one authorization metadata value")
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", status.Error(codes.Unauthenticated, `authorization metadata is not "Bearer <token>"`)
	}
	return strings.TrimSpace(token), nil
}

// splitServiceAccount splits a service account's user name,
// system:serviceaccount:<namespace>:<name>.
func splitServiceAccount(user string) (ns, sa string, ok bool) {
	rest, ok := strings.CutPrefix(user, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	ns, sa, ok = strings.Cut(rest, ":")
	if !ok || ns == "" || sa == "" || strings.Contains(sa, ":") {
		return "", "", false
	}
	return ns, sa, true
}

func extra(u authnv1.UserInfo, key string) string {
	if v := u.Extra[key]; len(v) == 1 {
		return v[0]
	}
	return ""
}

// tokenExpiry returns the "exp" claim of a JWT, read without verification (the TokenReview
// verified the token); only used to keep the cache from outliving the token. Zero if absent.
func tokenExpiry(token string) time.Time {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp *json.Number `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == nil {
		return time.Time{}
	}
	exp, err := claims.Exp.Int64()
	if err != nil {
		return time.Time{}
	}
	return time.Unix(exp, 0)
}

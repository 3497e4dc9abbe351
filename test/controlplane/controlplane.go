package controlplane

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// ServiceAccountIssuer is the issuer (and an API audience) of service account
// tokens, as in a cluster with the default cluster domain.
const ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

// Defaults for [Config] fields left empty.
const (
	DefaultServiceCIDR = "198.19.0.0/16"
	DefaultClusterCIDR = "198.18.0.0/16"
)

// Readiness deadlines of the components.
const (
	etcdTimeout      = 30 * time.Second
	apiServerTimeout = 90 * time.Second
	managerTimeout   = 60 * time.Second
)

// Config configures a control plane started by [Start].
type Config struct {
	Binaries Binaries
	// Dir is the state directory: certificates, keys, tokens, etcd data,
	// kubeconfigs and one <component>.log per process. Start creates it;
	// etcd data from an earlier run is removed.
	Dir string
	// ServiceCIDR is the Service IP range, e.g. "198.19.0.0/16"; its first
	// IP is the ClusterIP of the kubernetes Service. Default
	// [DefaultServiceCIDR].
	ServiceCIDR string
	// ClusterCIDR is the pod CIDR of the cluster, e.g. "198.18.0.0/16".
	// Default [DefaultClusterCIDR].
	ClusterCIDR string
	// ExtraSANs are extra IPs in the apiserver serving certificate.
	ExtraSANs []net.IP
	// CgroupDir, if non-empty, is a cgroup v2 directory in which every
	// process is started.
	CgroupDir string
	// Logger receives progress messages; nil discards them.
	Logger *slog.Logger
}

// ControlPlane is a running etcd, kube-apiserver, kube-controller-manager
// and kube-scheduler on loopback.
type ControlPlane struct {
	// RESTConfig authenticates as an admin (group system:masters) at
	// https://127.0.0.1:<APIServerPort>.
	RESTConfig *rest.Config
	// Kubeconfig is the path of the admin kubeconfig file.
	Kubeconfig string
	// CACertPEM is the CA that signed the apiserver serving certificate;
	// pods trust it through the kube-root-ca.crt ConfigMaps.
	CACertPEM []byte
	// APIServerPort is the apiserver's secure port on 127.0.0.1.
	APIServerPort int
	// EtcdPort is etcd's client port on 127.0.0.1 (plain HTTP).
	EtcdPort int
	// Dir is the state directory (see [Config.Dir]).
	Dir string

	adminToken string
	logger     *slog.Logger

	mu    sync.Mutex
	procs []*process // in start order
}

// Start starts etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler, and returns once the apiserver's /readyz is ok, the
// scheduler and controller-manager report healthy, and the default
// ServiceAccount exists in namespace default. ctx bounds the start only; the
// processes run until [ControlPlane.Stop]. On error everything already
// started is stopped.
func Start(ctx context.Context, cfg Config) (*ControlPlane, error) {
	cp, err := start(ctx, cfg)
	if err != nil {
		if cp != nil {
			if serr := cp.Stop(); serr != nil {
				err = errors.Join(err, serr)
			}
		}
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	return cp, nil
}

func start(ctx context.Context, cfg Config) (*ControlPlane, error) {
	t0 := time.Now()
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	dir := cfg.Dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(filepath.Join(dir, "etcd")); err != nil {
		return nil, err
	}
	serviceIP, err := firstServiceIP(cfg.ServiceCIDR)
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdPort, etcdPeerPort, apiPort := ports[0], ports[1], ports[2]

	keys, err := generatePKI(append(slices.Clone(cfg.ExtraSANs), serviceIP))
	if err != nil {
		return nil, err
	}
	admin := user{name: "admin", groups: []string{"system:masters"}}
	kcm := user{name: "system:kube-controller-manager"}
	sched := user{name: "system:kube-scheduler"}
	for _, u := range []*user{&admin, &kcm, &sched} {
		if u.token, err = newToken(); err != nil {
			return nil, err
		}
	}
	server := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	files := map[string][]byte{
		"ca.crt":        keys.caCert,
		"ca.key":        keys.caKey,
		"apiserver.crt": keys.servingCert,
		"apiserver.key": keys.servingKey,
		"sa.key":        keys.saKey,
		"tokens.csv":    renderTokenFile([]user{admin, kcm, sched}),
	}
	for name, u := range map[string]user{
		"admin.kubeconfig":                   admin,
		"kube-controller-manager.kubeconfig": kcm,
		"kube-scheduler.kubeconfig":          sched,
	} {
		if files[name], err = renderKubeconfig(server, keys.caCert, u.name, u.token); err != nil {
			return nil, err
		}
	}
	for name, data := range files {
		perm := os.FileMode(0o600) // keys, tokens and kubeconfigs
		if strings.HasSuffix(name, ".crt") {
			perm = 0o644
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, perm); err != nil {
			return nil, err
		}
	}
	path := func(name string) string { return filepath.Join(dir, name) }

	var cgroup *os.File
	if cfg.CgroupDir != "" {
		if cgroup, err = os.Open(cfg.CgroupDir); err != nil {
			return nil, fmt.Errorf("cgroup: %w", err)
		}
		// Children are placed in the cgroup when they are created; the
		// descriptor is not needed afterwards.
		defer cgroup.Close()
	}

	cp := &ControlPlane{
		RESTConfig: &rest.Config{
			Host:            server,
			BearerToken:     admin.token,
			TLSClientConfig: rest.TLSClientConfig{CAData: keys.caCert},
			QPS:             50,
			Burst:           100,
		},
		Kubeconfig:    path("admin.kubeconfig"),
		CACertPEM:     keys.caCert,
		APIServerPort: apiPort,
		EtcdPort:      etcdPort,
		Dir:           dir,
		adminToken:    admin.token,
		logger:        cfg.Logger,
	}
	run := func(name, bin string, args ...string) (*process, error) {
		p, err := startProcess(cfg.Logger, dir, name, bin, args, cgroup)
		if err != nil {
			return nil, err
		}
		cp.mu.Lock()
		cp.procs = append(cp.procs, p)
		cp.mu.Unlock()
		return p, nil
	}

	// etcd
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeerPort)
	etcd, err := run("etcd", cfg.Binaries.Etcd,
		"--name=weft",
		"--data-dir="+path("etcd"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=weft="+peerURL,
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
	if err != nil {
		return cp, err
	}
	plain := &http.Client{}
	defer plain.CloseIdleConnections()
	if err := etcd.waitReady(ctx, etcdTimeout, func(ctx context.Context) error {
		return etcdHealthy(ctx, plain, etcdURL)
	}); err != nil {
		return cp, err
	}

	// kube-apiserver
	apiserver, err := run("kube-apiserver", cfg.Binaries.KubeAPIServer,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(apiPort),
		"--cert-dir="+path("kube-apiserver"),
		"--tls-cert-file="+path("apiserver.crt"),
		"--tls-private-key-file="+path("apiserver.key"),
		"--etcd-servers="+etcdURL,
		"--token-auth-file="+path("tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer="+ServiceAccountIssuer,
		"--api-audiences="+ServiceAccountIssuer,
		"--service-account-key-file="+path("sa.key"),
		"--service-account-signing-key-file="+path("sa.key"),
		"--service-cluster-ip-range="+cfg.ServiceCIDR,
		"--allow-privileged=true",
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	)
	if err != nil {
		return cp, err
	}
	adminClient, err := rest.HTTPClientFor(cp.RESTConfig)
	if err != nil {
		return cp, fmt.Errorf("admin client: %w", err)
	}
	if err := apiserver.waitReady(ctx, apiServerTimeout, func(ctx context.Context) error {
		return httpOK(ctx, adminClient, server+"/readyz")
	}); err != nil {
		return cp, err
	}

	// kube-controller-manager and kube-scheduler; their ports are picked
	// only now to keep the window for another process to take them short.
	if ports, err = freePorts(2); err != nil {
		return cp, err
	}
	kcmPort, schedPort := ports[0], ports[1]
	controllerManager, err := run("kube-controller-manager", cfg.Binaries.KubeControllerManager,
		"--kubeconfig="+path("kube-controller-manager.kubeconfig"),
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--root-ca-file="+path("ca.crt"),
		"--service-account-private-key-file="+path("sa.key"),
		"--cluster-cidr="+cfg.ClusterCIDR,
		"--service-cluster-ip-range="+cfg.ServiceCIDR,
		"--allocate-node-cidrs=false",
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(kcmPort),
		"--cert-dir="+path("kube-controller-manager"),
		"--profiling=false",
	)
	if err != nil {
		return cp, err
	}
	scheduler, err := run("kube-scheduler", cfg.Binaries.KubeScheduler,
		"--kubeconfig="+path("kube-scheduler.kubeconfig"),
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(schedPort),
		"--cert-dir="+path("kube-scheduler"),
		"--profiling=false",
	)
	if err != nil {
		return cp, err
	}
	// Both serve self-signed certificates; /healthz needs no credentials.
	insecure := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback health check of a self-signed server
	}}
	defer insecure.CloseIdleConnections()
	for _, c := range []struct {
		p    *process
		port int
	}{{controllerManager, kcmPort}, {scheduler, schedPort}} {
		url := "https://127.0.0.1:" + strconv.Itoa(c.port) + "/healthz"
		if err := c.p.waitReady(ctx, managerTimeout, func(ctx context.Context) error {
			return httpOK(ctx, insecure, url)
		}); err != nil {
			return cp, err
		}
	}

	// The serviceaccount controller creates the default ServiceAccount; pods
	// cannot be admitted into namespace default before it exists.
	clientset, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		return cp, fmt.Errorf("clientset: %w", err)
	}
	if err := controllerManager.waitReady(ctx, managerTimeout, func(ctx context.Context) error {
		_, err := clientset.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return errors.New("serviceaccount default/default does not exist yet")
		}
		return err
	}); err != nil {
		return cp, err
	}
	cfg.Logger.Info("control plane ready", "server", server, "elapsed", time.Since(t0).Round(time.Millisecond), "dir", dir)
	return cp, nil
}

func (cfg *Config) setDefaults() error {
	if cfg.Dir == "" {
		return errors.New("config: Dir is required")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	cfg.Dir = dir
	for name, bin := range map[string]string{
		"Etcd":                  cfg.Binaries.Etcd,
		"KubeAPIServer":         cfg.Binaries.KubeAPIServer,
		"KubeControllerManager": cfg.Binaries.KubeControllerManager,
		"KubeScheduler":         cfg.Binaries.KubeScheduler,
	} {
		if bin == "" {
			return fmt.Errorf("config: Binaries.%s is required", name)
		}
	}
	if cfg.ServiceCIDR == "" {
		cfg.ServiceCIDR = DefaultServiceCIDR
	}
	if cfg.ClusterCIDR == "" {
		cfg.ClusterCIDR = DefaultClusterCIDR
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Stop kills all processes and waits until they have been reaped. It is safe
// to call more than once and after a partial start.
func (c *ControlPlane) Stop() error {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	var errs []error
	for _, p := range slices.Backward(procs) {
		if err := p.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(procs) > 0 && c.logger != nil {
		c.logger.Info("control plane stopped", "dir", c.Dir)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop control plane: %w", err)
	}
	return nil
}

// KubeconfigWithServer renders an admin kubeconfig with the same CA and
// credentials as [ControlPlane.Kubeconfig] but another server URL, e.g.
// https://203.0.113.1:6443 for clients that reach the apiserver through a
// forwarder (the address must be in [Config.ExtraSANs]).
func (c *ControlPlane) KubeconfigWithServer(server string) ([]byte, error) {
	return renderKubeconfig(server, c.CACertPEM, "admin", c.adminToken)
}

// etcdHealthy checks etcd's /health endpoint.
func etcdHealthy(ctx context.Context, client *http.Client, baseURL string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return fmt.Errorf("etcd /health: %w", err)
	}
	if h.Health != "true" {
		return fmt.Errorf("etcd /health: %s (health %q)", resp.Status, h.Health)
	}
	return nil
}

// httpOK checks that GET url answers 200.
func httpOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/test/harness"
)

// PeersNamespace holds the peers' pods. It is never enrolled in the mesh.
const PeersNamespace = "bench-peers"

// Ports of the peers on the nodes (host network).
const (
	TunnelHTTPListen = 15101 // client node, plain: → echo server
	TunnelHTTPTLS    = 15102 // server node, TLS
	TunnelBulkListen = 15111 // client node, plain: → bulk receiver
	TunnelBulkTLS    = 15112 // server node, TLS
	NginxPort        = 15201
)

// peerBinaries are the Debian binaries of the peers by harness image name (make deps installs
// the packages haproxy, stunnel4 and nginx).
var peerBinaries = map[string]string{"haproxy": "/usr/sbin/haproxy", "stunnel4": "/usr/bin/stunnel4", "nginx": "/usr/sbin/nginx"}

// PeerImages returns the harness image table entries of the peers whose binary is installed.
func PeerImages() harness.Images {
	im := harness.Images{}
	for name, bin := range peerBinaries {
		if _, err := os.Stat(bin); err == nil {
			im[name] = bin
		}
	}
	return im
}

// Peer is a deployed peer: its scenario and the pods its PeerMeter accounts.
type Peer struct {
	Scenario Scenario
	Pods     []Agent
}

const (
	peerCertDir = "/etc/weft-peer/tls"
	peerConfDir = "/etc/weft-peer/conf"
	nginxRunDir = "/var/run/weft-nginx"
)

// DeployPeers deploys the peers as host-network pods in PeersNamespace, as an operator would run
// them on the machines: an HAProxy and a stunnel on the client and the server node forming mTLS
// L4 tunnels to target's echo server and bulk receiver, and nginx on nginxNode proxying HTTP to
// the echo server. It returns the peers that started, each with its scenario (entered with
// enter, which must put the benchmark namespace out of the mesh and check it); the error joins
// the failures of the others.
func DeployPeers(ctx context.Context, c *harness.Cluster, target Target, plan Plan, nginxNode string, enter func(context.Context) error, fortio string) ([]Peer, error) {
	cn, sn := c.Node(target.ClientNode), c.Node(target.ServerNode)
	if cn == nil || sn == nil {
		return nil, fmt.Errorf("peers: nodes %q and %q must be harness nodes", target.ClientNode, target.ServerNode)
	}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: PeersNamespace, Labels: map[string]string{"app.kubernetes.io/part-of": "weft-bench"}}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("peers: %w", err)
	}
	pki, err := NewPeerPKI([]string{cn.Name, sn.Name}, time.Now(), 24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := createSecret(ctx, c, "peer-tls", pki.Files()); err != nil {
		return nil, err
	}
	// Each tunnel peer has ports of its own: both run host-network on the same nodes, and a
	// peer that could not bind would otherwise measure the other one.
	tunnelFor := func(offset int) (Tunnel, Target) {
		tun := Tunnel{ClientNode: cn.Name, ServerNode: sn.Name, ClientNodeIP: cn.IP.String(), ServerNodeIP: sn.IP.String(), CertDir: peerCertDir,
			Routes: []TunnelRoute{
				{Name: "http", Listen: TunnelHTTPListen + offset, Tunnel: TunnelHTTPTLS + offset, Dest: hostOf(target.HTTPURL)},
				{Name: "bulk", Listen: TunnelBulkListen + offset, Tunnel: TunnelBulkTLS + offset, Dest: target.BulkAddr},
			}}
		tt := target
		tt.HTTPURL = fmt.Sprintf("http://%s/", hostPort(tun.ClientNodeIP, TunnelHTTPListen+offset))
		tt.BulkAddr = hostPort(tun.ClientNodeIP, TunnelBulkListen+offset)
		tt.GRPCAddr = ""
		return tun, tt
	}
	// The tunnels carry every HTTP/1.1 and bulk workload; gRPC stays with Weft's rows.
	tunnelLoads := plan.IDs(func(w Workload) bool { return w.Kind != GRPC })

	var peers []Peer
	var errs []error
	images := PeerImages()
	for _, tp := range []struct {
		scenario, image, file, desc string
		render                      func(Tunnel, string) (string, error)
		args                        []string
		portOffset                  int
	}{
		{HAProxyScenario, "haproxy", "haproxy.cfg", "HAProxy %s (mode tcp) on each node as an mTLS L4 tunnel", HAProxyConfig, []string{"-db", "-f", peerConfDir + "/haproxy.cfg"}, 0},
		{StunnelScenario, "stunnel4", "stunnel.conf", "stunnel %s on each node as an mTLS L4 tunnel", StunnelConfig, []string{peerConfDir + "/stunnel.conf"}, 20},
	} {
		tun, tunnelTarget := tunnelFor(tp.portOffset)
		if _, ok := images[tp.image]; !ok {
			errs = append(errs, fmt.Errorf("%s: %s is not installed (make deps installs it)", tp.scenario, peerBinaries[tp.image]))
			continue
		}
		var pods []Agent
		err := func() error {
			for _, side := range []struct{ side, node string }{{ClientSide, cn.Name}, {ServerSide, sn.Name}} {
				conf, err := tp.render(tun, side.side)
				if err != nil {
					return err
				}
				name := tp.image + "-" + side.node
				if err := createConfigMap(ctx, c, name, map[string]string{tp.file: conf}); err != nil {
					return err
				}
				a, err := deployPeerPod(ctx, c, name, side.node, tp.image, tp.args, false)
				if err != nil {
					return err
				}
				pods = append(pods, a)
			}
			return nil
		}()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", tp.scenario, err))
			continue
		}
		version := toolVersionLine(ctx, images[tp.image], tp.image)
		peers = append(peers, Peer{Pods: pods, Scenario: Scenario{
			Name: tp.scenario,
			Description: fmt.Sprintf(tp.desc, version) + fmt.Sprintf(": the client addresses node-1's end directly (%s, plain TCP), which carries each connection "+
				"in its own TLS 1.3 connection (ECDSA P-256 node certificates, verified both ways) to node-2's end on :%d, which connects to the pod; "+
				"host-network pods, namespace %s not enrolled", tunnelTarget.HTTPURL, TunnelHTTPTLS+tp.portOffset, target.Namespace),
			Target:    tunnelTarget,
			Enter:     peerEnter(c, enter, tunnelTarget, fortio),
			Workloads: tunnelLoads,
			Meter:     &PeerMeter{Peers: pods},
			Path:      PathPeers,
		}})
	}

	if _, ok := images["nginx"]; !ok {
		errs = append(errs, fmt.Errorf("%s: %s is not installed (make deps installs it)", NginxScenario, peerBinaries["nginx"]))
	} else if p, err := deployNginx(ctx, c, target, plan, nginxNode, enter, fortio); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", NginxScenario, err))
	} else {
		peers = append(peers, p)
	}
	return peers, errors.Join(errs...)
}

func deployNginx(ctx context.Context, c *harness.Cluster, target Target, plan Plan, node string, enter func(context.Context) error, fortio string) (Peer, error) {
	n := c.Node(node)
	if n == nil {
		return Peer{}, fmt.Errorf("node %q is not a harness node", node)
	}
	conf, err := NginxConfig(NginxProxy{ListenIP: n.IP.String(), Listen: NginxPort, Upstream: hostOf(target.HTTPURL), RunDir: nginxRunDir})
	if err != nil {
		return Peer{}, err
	}
	name := "nginx-" + node
	if err := createConfigMap(ctx, c, name, map[string]string{"nginx.conf": conf}); err != nil {
		return Peer{}, err
	}
	a, err := deployPeerPod(ctx, c, name, node, "nginx", []string{"-e", "stderr", "-p", nginxRunDir + "/", "-c", peerConfDir + "/nginx.conf"}, true)
	if err != nil {
		return Peer{}, err
	}
	t := target
	t.HTTPURL = fmt.Sprintf("http://%s/", hostPort(n.IP.String(), NginxPort))
	t.BulkAddr, t.GRPCAddr = "", ""
	version := toolVersionLine(ctx, peerBinaries["nginx"], "nginx")
	return Peer{Pods: []Agent{a}, Scenario: Scenario{
		Name: NginxScenario,
		Description: fmt.Sprintf("%s as an HTTP reverse proxy on %s (host network, %s): the client addresses it directly, it proxies each request over "+
			"a pool of keep-alive HTTP/1.1 connections to the pod (plain text, one hop); only the fixed-rate HTTP workloads, as %s", version, node, t.HTTPURL, WeftL7Scenario),
		Target:    t,
		Enter:     peerEnter(c, enter, t, fortio),
		Workloads: plan.FixedRateHTTP(),
		Meter:     &PeerMeter{Peers: []Agent{a}},
		Path:      PathPeers,
	}}, nil
}

// peerEnter returns a scenario's Enter: enter (take the namespace out of the mesh), then wait
// until a request through the peer answers.
func peerEnter(c *harness.Cluster, enter func(context.Context) error, t Target, fortio string) func(context.Context) error {
	return func(ctx context.Context) error {
		if enter != nil {
			if err := enter(ctx); err != nil {
				return err
			}
		}
		return harness.WaitFor(ctx, 15*time.Second, "a request through "+t.HTTPURL, func(ctx context.Context) (bool, error) {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if _, err := c.Exec(cctx, t.Namespace, t.ClientPod, fortio, "curl", "-loglevel", "Warning", t.HTTPURL); err != nil {
				return false, err
			}
			return true, nil
		})
	}
}

func createSecret(ctx context.Context, c *harness.Cluster, name string, files map[string][]byte) error {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: PeersNamespace}, Data: files}
	if _, err := c.Client.CoreV1().Secrets(PeersNamespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("secret %s: %w", name, err)
	}
	return nil
}

func createConfigMap(ctx context.Context, c *harness.Cluster, name string, data map[string]string) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: PeersNamespace}, Data: data}
	if _, err := c.Client.CoreV1().ConfigMaps(PeersNamespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("configmap %s: %w", name, err)
	}
	return nil
}

// deployPeerPod runs one peer process as a host-network Deployment pinned to node, with the
// peer's configuration (ConfigMap name) and the tunnel certificates mounted, and returns its pod
// with its cgroup.
func deployPeerPod(ctx context.Context, c *harness.Cluster, name, node, image string, args []string, runDir bool) (Agent, error) {
	one := int32(1)
	labels := map[string]string{"app": name}
	spec := corev1.PodSpec{
		HostNetwork:  true,
		NodeSelector: map[string]string{"kubernetes.io/hostname": node},
		Containers: []corev1.Container{{
			Name: image, Image: image, Args: args,
			VolumeMounts: []corev1.VolumeMount{
				{Name: "conf", MountPath: peerConfDir, ReadOnly: true},
				{Name: "tls", MountPath: peerCertDir, ReadOnly: true},
			},
		}},
		Volumes: []corev1.Volume{
			{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}},
			{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "peer-tls"}}},
		},
	}
	if runDir {
		spec.Containers[0].VolumeMounts = append(spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "run", MountPath: nginxRunDir})
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "run", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: PeersNamespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}
	if _, err := c.Client.AppsV1().Deployments(PeersNamespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return Agent{}, fmt.Errorf("deployment %s: %w", name, err)
	}
	if err := c.WaitDeploymentReady(ctx, PeersNamespace, name, deployWait); err != nil {
		return Agent{}, fmt.Errorf("deployment %s: %w", name, err)
	}
	p, err := readyPod(ctx, c, PeersNamespace, name)
	if err != nil {
		return Agent{}, fmt.Errorf("deployment %s: %w", name, err)
	}
	dir, err := c.PodCgroupDir(p)
	if err != nil {
		return Agent{}, fmt.Errorf("deployment %s: %w", name, err)
	}
	return Agent{Node: p.Spec.NodeName, Pod: p.Namespace + "/" + p.Name, Cgroup: dir}, nil
}

// hostOf returns the host:port of an http:// URL ("" if it has none).
func hostOf(rawURL string) string {
	u, err := urlParse(rawURL)
	if err != nil {
		return ""
	}
	return u
}

package controlplane_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftmesh/weft/test/controlplane"
)

// forwarderIP is the address node-side clients use to reach the apiserver.
const forwarderIP = "203.0.113.1"

// TestControlPlaneStarts builds (or finds cached) binaries, starts a real
// control plane and checks that the controller-manager and the namespace
// lifecycle work. A cold build takes about ten minutes on two cores; run
// `make tools` first or give go test a -timeout above the default 10m.
func TestControlPlaneStarts(t *testing.T) {
	ctx, cp := controlplane.StartForTest(t, controlplane.Config{
		ServiceCIDR: "198.19.0.0/16",
		ClusterCIDR: "198.18.0.0/16",
		ExtraSANs:   []net.IP{net.ParseIP(forwarderIP)},
	})

	cs, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("version", func(t *testing.T) {
		v, err := cs.Discovery().ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		if v.GitVersion != controlplane.KubernetesVersion {
			t.Errorf("server version %q, want %q", v.GitVersion, controlplane.KubernetesVersion)
		}
	})

	t.Run("kubeconfig file", func(t *testing.T) {
		cfg, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		c, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		svc, err := c.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if svc.Spec.ClusterIP != "198.19.0.1" {
			t.Errorf("kubernetes Service ClusterIP %s, want 198.19.0.1", svc.Spec.ClusterIP)
		}
	})

	t.Run("serving certificate", func(t *testing.T) {
		// The certificate must be valid for the forwarder address as well.
		kc, err := cp.KubeconfigWithServer("https://" + forwarderIP + ":6443")
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Host != "https://"+forwarderIP+":6443" || cfg.BearerToken != cp.RESTConfig.BearerToken {
			t.Errorf("forwarder kubeconfig: host %q, same token %v", cfg.Host, cfg.BearerToken == cp.RESTConfig.BearerToken)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(cp.CACertPEM)
		conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(cp.APIServerPort)), &tls.Config{
			RootCAs:    roots,
			ServerName: forwarderIP,
		})
		if err != nil {
			t.Fatalf("TLS to the apiserver as %s: %v", forwarderIP, err)
		}
		conn.Close()
	})

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "cp-test"}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	replicas := int32(1)
	labels := map[string]string{"app": "x"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: ns.Name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}},
			},
		},
	}
	// Pods need the namespace's default ServiceAccount, which the
	// controller-manager creates; the Deployment itself can be created now.
	if _, err := cs.AppsV1().Deployments(ns.Name).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment: %v", err)
	}

	var pod corev1.Pod
	poll(ctx, t, "the Deployment's ReplicaSet and Pod", 60*time.Second, func(ctx context.Context) error {
		rss, err := cs.AppsV1().ReplicaSets(ns.Name).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(rss.Items) != 1 || !ownedBy(rss.Items[0].OwnerReferences, "Deployment", dep.Name) {
			return fmt.Errorf("%d ReplicaSets", len(rss.Items))
		}
		pods, err := cs.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(pods.Items) != 1 || !ownedBy(pods.Items[0].OwnerReferences, "ReplicaSet", rss.Items[0].Name) {
			return fmt.Errorf("%d Pods", len(pods.Items))
		}
		pod = pods.Items[0]
		return nil
	})
	if pod.Spec.ServiceAccountName != "default" {
		t.Errorf("pod service account %q, want default", pod.Spec.ServiceAccountName)
	}
	if !hasKubeAPIAccess(pod) {
		t.Errorf("pod has no projected kube-api-access volume: %+v", pod.Spec.Volumes)
	}
	if pod.Spec.NodeName != "" {
		t.Errorf("pod scheduled to %q although no node exists", pod.Spec.NodeName)
	}

	poll(ctx, t, "kube-root-ca.crt in the namespace", 30*time.Second, func(ctx context.Context) error {
		cm, err := cs.CoreV1().ConfigMaps(ns.Name).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !bytes.Equal(bytes.TrimSpace([]byte(cm.Data["ca.crt"])), bytes.TrimSpace(cp.CACertPEM)) {
			return fmt.Errorf("kube-root-ca.crt holds another CA")
		}
		return nil
	})

	if err := cs.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete namespace: %v", err)
	}
	poll(ctx, t, "namespace deletion", 2*time.Minute, func(ctx context.Context) error {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("namespace %s still exists", ns.Name)
	})

	if err := cp.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := cs.Discovery().ServerVersion(); err == nil {
		t.Error("apiserver still answers after Stop")
	}
}

// poll calls cond until it returns nil or timeout elapses, then fails the
// test with the last error.
func poll(ctx context.Context, t *testing.T, what string, timeout time.Duration, cond func(context.Context) error) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		last = cond(ctx)
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v (last: %v)", what, err, last)
	}
}

func ownedBy(refs []metav1.OwnerReference, kind, name string) bool {
	for _, r := range refs {
		if r.Kind == kind && r.Name == name && r.Controller != nil && *r.Controller {
			return true
		}
	}
	return false
}

// hasKubeAPIAccess reports whether the ServiceAccount admission plugin
// injected the projected kube-api-access-* volume with a token, the root CA
// and the namespace, mounted into the container.
func hasKubeAPIAccess(pod corev1.Pod) bool {
	var name string
	for _, v := range pod.Spec.Volumes {
		if !strings.HasPrefix(v.Name, "kube-api-access-") || v.Projected == nil {
			continue
		}
		var token, ca bool
		for _, s := range v.Projected.Sources {
			token = token || s.ServiceAccountToken != nil
			ca = ca || (s.ConfigMap != nil && s.ConfigMap.Name == "kube-root-ca.crt")
		}
		if token && ca {
			name = v.Name
		}
	}
	if name == "" || len(pod.Spec.Containers) == 0 {
		return false
	}
	for _, m := range pod.Spec.Containers[0].VolumeMounts {
		if m.Name == name && m.MountPath == "/var/run/secrets/kubernetes.io/serviceaccount" {
			return true
		}
	}
	return false
}

package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/weftmesh/weft/test/harness/podshim"
)

// prepareVolumes materializes the pod's volumes under its state directory and returns the host
// directory of each volume by name. Supported: emptyDir, hostPath, configMap, secret, downwardAPI
// and projected (serviceAccountToken, configMap, secret, downwardAPI), which covers the
// kube-api-access volume the ServiceAccount admission plugin injects.
func (w *podWorker) prepareVolumes(pod *corev1.Pod) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(w.dir, "volumes", v.Name)
		var files map[string][]byte
		var err error
		switch {
		case v.HostPath != nil:
			p := w.k.node.HostPath(v.HostPath.Path) // node-scoped paths are the node's own
			if t := v.HostPath.Type; t != nil && (*t == corev1.HostPathDirectoryOrCreate) {
				if err := os.MkdirAll(p, 0o755); err != nil {
					return nil, fmt.Errorf("volume %s: %w", v.Name, err)
				}
			}
			out[v.Name] = p
			continue
		case v.EmptyDir != nil:
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.Name, err)
			}
			out[v.Name] = dir
			continue
		case v.ConfigMap != nil:
			files, err = w.configMapFiles(pod.Namespace, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional)
		case v.Secret != nil:
			files, err = w.secretFiles(pod.Namespace, v.Secret.SecretName, v.Secret.Items, v.Secret.Optional)
		case v.DownwardAPI != nil:
			files, err = w.downwardFiles(pod, v.DownwardAPI.Items)
		case v.Projected != nil:
			files, err = w.projectedFiles(pod, v.Projected.Sources)
		default:
			return nil, fmt.Errorf("volume %s: type not supported by the harness kubelet", v.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if err := writeFiles(dir, files); err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		out[v.Name] = dir
	}
	return out, nil
}

func (w *podWorker) configMapFiles(ns, name string, items []corev1.KeyToPath, optional *bool) (map[string][]byte, error) {
	cm, err := w.k.node.cluster.Client.CoreV1().ConfigMaps(ns).Get(w.ctx, name, metav1.GetOptions{})
	if err != nil {
		if ptr.Deref(optional, false) {
			return nil, nil
		}
		return nil, fmt.Errorf("configmap %s: %w", name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return selectItems(data, items)
}

func (w *podWorker) secretFiles(ns, name string, items []corev1.KeyToPath, optional *bool) (map[string][]byte, error) {
	s, err := w.k.node.cluster.Client.CoreV1().Secrets(ns).Get(w.ctx, name, metav1.GetOptions{})
	if err != nil {
		if ptr.Deref(optional, false) {
			return nil, nil
		}
		return nil, fmt.Errorf("secret %s: %w", name, err)
	}
	return selectItems(s.Data, items)
}

// selectItems applies a volume's items list (all keys when empty).
func selectItems(data map[string][]byte, items []corev1.KeyToPath) (map[string][]byte, error) {
	if len(items) == 0 {
		return data, nil
	}
	out := map[string][]byte{}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return nil, fmt.Errorf("key %q not found", it.Key)
		}
		out[it.Path] = v
	}
	return out, nil
}

func (w *podWorker) downwardFiles(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, it := range items {
		if it.FieldRef == nil {
			return nil, fmt.Errorf("downwardAPI %s: only fieldRef is supported", it.Path)
		}
		v, err := w.fieldValue(pod, it.FieldRef.FieldPath)
		if err != nil {
			return nil, err
		}
		out[it.Path] = []byte(v)
	}
	return out, nil
}

func (w *podWorker) projectedFiles(pod *corev1.Pod, sources []corev1.VolumeProjection) (map[string][]byte, error) {
	out := map[string][]byte{}
	merge := func(m map[string][]byte, err error) error {
		for k, v := range m {
			out[k] = v
		}
		return err
	}
	for _, s := range sources {
		var err error
		switch {
		case s.ServiceAccountToken != nil:
			err = merge(w.serviceAccountToken(pod, s.ServiceAccountToken))
		case s.ConfigMap != nil:
			err = merge(w.configMapFiles(pod.Namespace, s.ConfigMap.Name, s.ConfigMap.Items, s.ConfigMap.Optional))
		case s.Secret != nil:
			err = merge(w.secretFiles(pod.Namespace, s.Secret.Name, s.Secret.Items, s.Secret.Optional))
		case s.DownwardAPI != nil:
			err = merge(w.downwardFiles(pod, s.DownwardAPI.Items))
		default:
			err = fmt.Errorf("projected source not supported by the harness kubelet")
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// serviceAccountToken requests a token bound to the pod through the TokenRequest API, as the kubelet does.
func (w *podWorker) serviceAccountToken(pod *corev1.Pod, p *corev1.ServiceAccountTokenProjection) (map[string][]byte, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: p.ExpirationSeconds,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if p.Audience != "" {
		req.Spec.Audiences = []string{p.Audience}
	}
	tr, err := w.k.node.cluster.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(w.ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token for serviceaccount %s: %w", sa, err)
	}
	return map[string][]byte{p.Path: []byte(tr.Status.Token)}, nil
}

// fieldValue resolves a downward-API field path.
func (w *podWorker) fieldValue(pod *corev1.Pod, path string) (string, error) {
	w.mu.Lock()
	ip := w.ip
	w.mu.Unlock()
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.hostIPs":
		return w.k.node.IP.String(), nil
	case "status.podIP", "status.podIPs":
		if ip == nil {
			return "", nil
		}
		return ip.String(), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	}
	for _, f := range []struct {
		prefix string
		m      map[string]string
	}{{"metadata.labels['", pod.Labels}, {"metadata.annotations['", pod.Annotations}} {
		if key, ok := strings.CutPrefix(path, f.prefix); ok {
			return f.m[strings.TrimSuffix(key, "']")], nil
		}
	}
	return "", fmt.Errorf("field path %q not supported by the harness kubelet", path)
}

func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, strconv.Quote(m[k]))
	}
	return b.String()
}

// writeFiles writes files into dir, each atomically, so a running container never sees half a file.
func writeFiles(dir string, files map[string][]byte) error {
	for name, data := range files {
		if err := writeAtomic(filepath.Join(dir, filepath.Clean("/"+name)), data); err != nil {
			return err
		}
	}
	return os.MkdirAll(dir, 0o755)
}

// writeAtomic writes p (creating its directory) through a temporary file and a rename.
func writeAtomic(p string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// containerMounts turns volumeMounts into bind mounts, adding the pod's /etc/resolv.conf and
// /etc/hosts as a kubelet does.
func containerMounts(pod *corev1.Pod, c corev1.Container, volumes map[string]string, podDir string) ([]podshim.Mount, error) {
	var out []podshim.Mount
	for _, vm := range c.VolumeMounts {
		src, ok := volumes[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volumeMount %s: no volume of that name", vm.Name)
		}
		if vm.SubPath != "" {
			src = filepath.Join(src, filepath.Clean("/"+vm.SubPath))
		}
		out = append(out, podshim.Mount{Source: src, Target: vm.MountPath, ReadOnly: vm.ReadOnly})
	}
	if pod.Spec.DNSPolicy == corev1.DNSDefault || pod.Spec.HostNetwork && pod.Spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		return out, nil // the node's resolver
	}
	etc := filepath.Join(podDir, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return nil, err
	}
	resolv := filepath.Join(etc, "resolv.conf")
	if err := os.WriteFile(resolv, []byte(resolvConf(pod)), 0o644); err != nil {
		return nil, err
	}
	out = append(out, podshim.Mount{Source: resolv, Target: "/etc/resolv.conf", ReadOnly: true})
	return out, nil
}

// resolvConf is the pod's resolver configuration for dnsPolicy ClusterFirst.
func resolvConf(pod *corev1.Pod) string {
	if pod.Spec.DNSPolicy == corev1.DNSNone && pod.Spec.DNSConfig != nil {
		var b strings.Builder
		for _, s := range pod.Spec.DNSConfig.Nameservers {
			fmt.Fprintf(&b, "nameserver %s\n", s)
		}
		if len(pod.Spec.DNSConfig.Searches) > 0 {
			fmt.Fprintf(&b, "search %s\n", strings.Join(pod.Spec.DNSConfig.Searches, " "))
		}
		return b.String()
	}
	return fmt.Sprintf("nameserver %s\nsearch %s.svc.%s svc.%s %s\noptions ndots:5\n",
		ClusterDNS, pod.Namespace, clusterDomain, clusterDomain, clusterDomain)
}

// containerEnv builds a container's environment: the service variables of the kubernetes
// Service, the container's env and envFrom, with Kubernetes' $(VAR) expansion.
func (w *podWorker) containerEnv(pod *corev1.Pod, c corev1.Container) ([]string, error) {
	ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
	defer cancel()
	cs := w.k.node.cluster.Client.CoreV1()
	vars := map[string]string{
		"PATH":                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOSTNAME":                podHostname(pod, w.k.node),
		"KUBERNETES_SERVICE_HOST": "198.19.0.1",
		"KUBERNETES_SERVICE_PORT": "443",
	}
	order := []string{"PATH", "HOSTNAME", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"}
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, ef := range c.EnvFrom {
		var data map[string]string
		switch {
		case ef.ConfigMapRef != nil:
			cm, err := cs.ConfigMaps(pod.Namespace).Get(ctx, ef.ConfigMapRef.Name, metav1.GetOptions{})
			if err != nil {
				if ptr.Deref(ef.ConfigMapRef.Optional, false) {
					continue
				}
				return nil, fmt.Errorf("envFrom configmap %s: %w", ef.ConfigMapRef.Name, err)
			}
			data = cm.Data
		case ef.SecretRef != nil:
			s, err := cs.Secrets(pod.Namespace).Get(ctx, ef.SecretRef.Name, metav1.GetOptions{})
			if err != nil {
				if ptr.Deref(ef.SecretRef.Optional, false) {
					continue
				}
				return nil, fmt.Errorf("envFrom secret %s: %w", ef.SecretRef.Name, err)
			}
			data = map[string]string{}
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			set(ef.Prefix+k, data[k])
		}
	}
	for _, e := range c.Env {
		v := e.Value
		switch src := e.ValueFrom; {
		case src == nil:
			v = expandVars(v, vars)
		case src.FieldRef != nil:
			fv, err := w.fieldValue(pod, src.FieldRef.FieldPath)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			v = fv
		case src.ConfigMapKeyRef != nil:
			cm, err := cs.ConfigMaps(pod.Namespace).Get(ctx, src.ConfigMapKeyRef.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			v = cm.Data[src.ConfigMapKeyRef.Key]
		case src.SecretKeyRef != nil:
			s, err := cs.Secrets(pod.Namespace).Get(ctx, src.SecretKeyRef.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			v = string(s.Data[src.SecretKeyRef.Key])
		case src.ResourceFieldRef != nil:
			v = "0" // the harness sets no resource limits
		}
		set(e.Name, v)
	}
	env := make([]string, 0, len(order))
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	return env, nil
}

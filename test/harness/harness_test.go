package harness

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestImageName(t *testing.T) {
	for _, tc := range []struct{ image, want string }{
		{"echo", "echo"},
		{"weftmesh/echo:latest", "echo"},
		{"registry.local:5000/team/echo:v2", "echo"},
		{"ghcr.io/weftmesh/weft-nodeagent@sha256:abcd", "weft-nodeagent"},
		{"registry.k8s.io/coredns/coredns:v1.12.0", "coredns"},
	} {
		if got := imageName(tc.image); got != tc.want {
			t.Errorf("imageName(%q) = %q, want %q", tc.image, got, tc.want)
		}
	}
}

func TestImagesResolve(t *testing.T) {
	im := defaultImages("/repo/bin", "/cache/coredns", "/cache/fortio")
	if got, err := im.Resolve("docker.io/weftmesh/echo:v1"); err != nil || got != "/repo/bin/echo" {
		t.Errorf("Resolve(echo) = %q, %v", got, err)
	}
	if got, err := im.Resolve("fortio/fortio:latest"); err != nil || got != "/cache/fortio" {
		t.Errorf("Resolve(fortio) = %q, %v", got, err)
	}
	_, err := im.Resolve("nginx:1.27")
	if err == nil || !strings.Contains(err.Error(), `"nginx"`) || !strings.Contains(err.Error(), "Options.Images") {
		t.Errorf("Resolve(nginx) error = %v, want one naming the image and the fix", err)
	}
}

func TestExpandVars(t *testing.T) {
	vars := map[string]string{"POD_IP": "198.18.1.5", "PORT": "8080"}
	for _, tc := range []struct{ in, want string }{
		{"--listen=$(POD_IP):$(PORT)", "--listen=198.18.1.5:8080"},
		{"$(UNDEFINED)", "$(UNDEFINED)"},
		{"cost $$5", "cost $5"},
		{"$$(POD_IP)", "$(POD_IP)"},
		{"unterminated $(POD_IP", "unterminated $(POD_IP"},
		{"plain $ sign", "plain $ sign"},
		{"trailing $", "trailing $"},
	} {
		if got := expandVars(tc.in, vars); got != tc.want {
			t.Errorf("expandVars(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestResolvConf(t *testing.T) {
	pod := &corev1.Pod{}
	pod.Namespace = "mesh"
	got := resolvConf(pod)
	for _, want := range []string{"nameserver 198.19.0.10", "search mesh.svc.cluster.local svc.cluster.local cluster.local", "options ndots:5"} {
		if !strings.Contains(got, want) {
			t.Errorf("resolv.conf %q lacks %q", got, want)
		}
	}
	pod.Spec.DNSPolicy = corev1.DNSNone
	pod.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"198.19.0.53"}, Searches: []string{"a.example"}}
	if got := resolvConf(pod); got != "nameserver 198.19.0.53\nsearch a.example\n" {
		t.Errorf("dnsPolicy None: %q", got)
	}
}

func TestSelectItems(t *testing.T) {
	data := map[string][]byte{"a": []byte("1"), "b": []byte("2")}
	all, err := selectItems(data, nil)
	if err != nil || len(all) != 2 {
		t.Fatalf("no items: %v %v", all, err)
	}
	some, err := selectItems(data, []corev1.KeyToPath{{Key: "b", Path: "dir/b.txt"}})
	if err != nil || string(some["dir/b.txt"]) != "2" || len(some) != 1 {
		t.Fatalf("items: %v %v", some, err)
	}
	if _, err := selectItems(data, []corev1.KeyToPath{{Key: "missing", Path: "x"}}); err == nil {
		t.Fatal("missing key: no error")
	}
}

func TestWriteFilesStaysInsideDir(t *testing.T) {
	dir := t.TempDir()
	if err := writeFiles(dir, map[string][]byte{"../../escape": []byte("x"), "sub/ok": []byte("y")}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "escape")); err != nil {
		t.Errorf("a path with .. must land inside the volume: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "sub", "ok")); string(b) != "y" {
		t.Errorf("sub/ok = %q", b)
	}
}

func TestContainerMounts(t *testing.T) {
	pod := &corev1.Pod{}
	pod.Namespace = "mesh"
	c := corev1.Container{VolumeMounts: []corev1.VolumeMount{
		{Name: "cfg", MountPath: "/etc/app", ReadOnly: true},
		{Name: "cfg", MountPath: "/etc/app.conf", SubPath: "app.conf"},
	}}
	dir := t.TempDir()
	got, err := containerMounts(pod, c, map[string]string{"cfg": "/vol/cfg"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Source != "/vol/cfg" || !got[0].ReadOnly || got[1].Source != "/vol/cfg/app.conf" || got[2].Target != "/etc/resolv.conf" {
		t.Errorf("mounts = %+v", got)
	}
	if _, err := containerMounts(pod, corev1.Container{VolumeMounts: []corev1.VolumeMount{{Name: "nope", MountPath: "/x"}}}, nil, dir); err == nil {
		t.Error("unknown volume: no error")
	}
	pod.Spec.HostNetwork = true
	if got, _ := containerMounts(pod, corev1.Container{}, nil, dir); len(got) != 0 {
		t.Errorf("hostNetwork pod gets the node's resolver, got mounts %+v", got)
	}
}

func TestResolvePort(t *testing.T) {
	c := corev1.Container{Name: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}
	for _, tc := range []struct {
		port intstr.IntOrString
		want int
		err  bool
	}{
		{intstr.FromInt32(9090), 9090, false},
		{intstr.FromString("http"), 8080, false},
		{intstr.FromString("grpc"), 0, true},
	} {
		got, err := resolvePort(tc.port, c)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("resolvePort(%v) = %d, %v", tc.port.String(), got, err)
		}
	}
}

func TestBaseConfList(t *testing.T) {
	_, cidr, _ := net.ParseCIDR("198.18.1.0/24")
	_, cidr6, _ := net.ParseCIDR("2001:db8:18:1::/64")
	raw, err := baseConfList(cidr, cidr6, "/state/ipam", []map[string]any{{"type": "weft-cni"}})
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Plugins) != 2 || list.Plugins[0]["type"] != "bridge" || list.Plugins[1]["type"] != "weft-cni" {
		t.Fatalf("chain = %v, want bridge then the chained plugin", list.Plugins)
	}
	ipam := list.Plugins[0]["ipam"].(map[string]any)
	if ipam["type"] != "host-local" || !strings.Contains(string(raw), "198.18.1.0/24") || !strings.Contains(string(raw), "2001:db8:18:1::/64") {
		t.Errorf("ipam = %v", ipam)
	}
}

func TestNodeHostPath(t *testing.T) {
	n := &Node{CgroupDir: "/cg/weft-r/node-1", PinDir: "/sys/fs/bpf/weft-r/node-1", StateDir: "/run/weft-harness/r/nodes/node-1"}
	for _, tc := range []struct{ in, want string }{
		{"/sys/fs/cgroup", "/cg/weft-r/node-1"},
		{"/sys/fs/bpf/weft", "/sys/fs/bpf/weft-r/node-1/weft"},
		{"/etc/cni/net.d", "/run/weft-harness/r/nodes/node-1/cni/net.d"},
		{"/opt/cni/bin/weft-cni", "/run/weft-harness/r/nodes/node-1/cni/bin/weft-cni"},
		{"/var/run/weft/cni.sock", "/run/weft-harness/r/nodes/node-1/run-weft/cni.sock"},
		{"/run/weft/cni.sock", "/run/weft-harness/r/nodes/node-1/run-weft/cni.sock"},
		{"/run/weftx", "/run/weftx"},
		{"/etc/cni/net.dx", "/etc/cni/net.dx"},
		{"/proc", "/proc"},
	} {
		if got := n.HostPath(tc.in); got != tc.want {
			t.Errorf("HostPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestProgress(t *testing.T) {
	var b bytes.Buffer
	p := NewProgress(&b)
	p.Step("building %s", "things")
	if _, err := p.Write([]byte("from another package\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write([]byte("[ 91.0s] own timeline\ntwo lines\n")); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^\[ +0\.\ds\] building things\n\[ +0\.\ds\] from another package\n\[ +0\.\ds\] own timeline\n\[ +0\.\ds\] two lines\n$`)
	if !re.MatchString(b.String()) {
		t.Errorf("progress output:\n%s", b.String())
	}
}

func TestAddressPlan(t *testing.T) {
	for _, ip := range []net.IP{APIServerVIP, ClusterDNS} {
		if underlayCIDR.Contains(ip) || clusterCIDR.Contains(ip) {
			t.Errorf("%s overlaps node or pod addresses", ip)
		}
	}
	if !serviceCIDR.Contains(ClusterDNS) {
		t.Errorf("cluster DNS %s outside the service CIDR %s", ClusterDNS, serviceCIDR)
	}
	for i := 1; i <= 9; i++ {
		pod := &net.IPNet{IP: net.IPv4(198, 18, byte(i), 0).To4(), Mask: net.CIDRMask(24, 32)}
		if !clusterCIDR.Contains(pod.IP) {
			t.Errorf("node %d pod CIDR %s outside the cluster CIDR", i, pod)
		}
	}
}

func TestIsRunID(t *testing.T) {
	for id, want := range map[string]bool{
		newRunID(): true, "0a1b2c": true, "test": false, "0A1B2C": false, ".0a1b2": false, "0a1b2c3": false, "g00000": false,
	} {
		if got := isRunID(id); got != want {
			t.Errorf("isRunID(%q) = %v, want %v", id, got, want)
		}
	}
}

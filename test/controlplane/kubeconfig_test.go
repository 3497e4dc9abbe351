package controlplane

import (
	"bytes"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

func TestRenderKubeconfig(t *testing.T) {
	p, err := generatePKI(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, server, user, token string
	}{
		{name: "loopback", server: "https://127.0.0.1:34567", user: "admin", token: "t0k3n"},
		{name: "forwarder", server: "https://203.0.113.1:6443", user: "system:kube-scheduler", token: "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := renderKubeconfig(tt.server, p.caCert, tt.user, tt.token)
			if err != nil {
				t.Fatalf("renderKubeconfig: %v", err)
			}
			cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
			if err != nil {
				t.Fatalf("load rendered kubeconfig: %v\n%s", err, data)
			}
			if cfg.Host != tt.server {
				t.Errorf("server = %q, want %q", cfg.Host, tt.server)
			}
			if cfg.BearerToken != tt.token {
				t.Errorf("token = %q, want %q", cfg.BearerToken, tt.token)
			}
			if !bytes.Equal(cfg.CAData, p.caCert) {
				t.Error("CA data differs from the CA certificate")
			}
			raw, err := clientcmd.Load(data)
			if err != nil {
				t.Fatal(err)
			}
			if ctx := raw.Contexts[raw.CurrentContext]; ctx == nil || ctx.AuthInfo != tt.user {
				t.Errorf("current context %q does not use user %q: %+v", raw.CurrentContext, tt.user, ctx)
			}
		})
	}
}

func TestKubeconfigWithServer(t *testing.T) {
	cp := &ControlPlane{CACertPEM: []byte("ca"), adminToken: "secret"}
	data, err := cp.KubeconfigWithServer("https://203.0.113.1:6443")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://203.0.113.1:6443" || cfg.BearerToken != "secret" || string(cfg.CAData) != "ca" {
		t.Errorf("got host %q token %q ca %q", cfg.Host, cfg.BearerToken, cfg.CAData)
	}
}

func TestRenderTokenFile(t *testing.T) {
	got := string(renderTokenFile([]user{
		{name: "admin", groups: []string{"system:masters"}, token: "a"},
		{name: "system:kube-scheduler", token: "b"},
		{name: "multi", groups: []string{"g1", "g2"}, token: "c"},
	}))
	want := "a,admin,admin,\"system:masters\"\n" +
		"b,system:kube-scheduler,system:kube-scheduler\n" +
		"c,multi,multi,\"g1,g2\"\n"
	if got != want {
		t.Errorf("token file:\n got %q\nwant %q", got, want)
	}
}

func TestNewTokenUnique(t *testing.T) {
	a, err := newToken()
	if err != nil {
		t.Fatal(err)
	}
	b, err := newToken()
	if err != nil {
		t.Fatal(err)
	}
	if a == b || len(a) != 48 {
		t.Errorf("tokens %q and %q: want distinct 48-character tokens", a, b)
	}
}

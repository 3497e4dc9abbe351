package admin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/translate"
	"github.com/weftmesh/weft/controller/xds"
)

func TestPages(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := prometheus.NewRegistry()
	x, err := xds.New(ctx, xds.Options{Authenticate: func(context.Context) (xds.Peer, error) { return xds.Peer{}, errors.New("no") }, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ready := errors.New("informers not synced")
	go func() {
		_ = Run(ctx, Options{Addr: addr, XDS: x, Gatherer: reg, Ready: func() error { return ready }})
	}()
	get := func(path string) (int, string) {
		t.Helper()
		for range 50 {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		t.Fatalf("GET %s: server not up", path)
		return 0, ""
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "informers not synced") {
		t.Errorf("/readyz before sync: %d %q", code, body)
	}
	if code, _ := get("/debug/model"); code != http.StatusServiceUnavailable {
		t.Errorf("/debug/model before a push: %d", code)
	}

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{api.LabelDataplaneMode: api.DataplaneModeAmbient}}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Annotations: map[string]string{api.AnnotationExcludeInboundPorts: "x"}},
		Spec:       corev1.PodSpec{NodeName: "node-a"},
		Status:     corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: "198.18.1.5"}}},
	}
	x.Push(ctx, translate.Build(translate.Input{Namespaces: []*corev1.Namespace{ns}, Pods: []*corev1.Pod{pod}}, translate.Options{}), []string{"node-a"})
	ready = nil
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/healthz", 200, "ok"},
		{"/readyz", 200, "ready"},
		{"/debug/model", 200, `"uid":"Kubernetes//Pod/shop/web"`},
		{"/debug/node?name=node-a", 200, `"Kubernetes//Pod/shop/web"`},
		{"/debug/node", 400, "name the node"},
		{"/debug/push", 200, `"node": "node-a"`},
		{"/debug/warnings", 200, "excludeInboundPorts"},
		{"/debug/waypoints", 200, `"configs": {}`},
		{"/metrics", 200, "weft_controller_xds_pushes_total 1"},
	} {
		code, body := get(tc.path)
		if code != tc.code || !strings.Contains(strings.ReplaceAll(body, `": "`, `":"`), strings.ReplaceAll(tc.want, `": "`, `":"`)) {
			t.Errorf("GET %s: %d %q; want %d containing %q", tc.path, code, body, tc.code, tc.want)
		}
	}
}

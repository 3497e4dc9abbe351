package envoy

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/api"
)

func TestEndpointMetadata(t *testing.T) {
	b := &builder{td: "example.org", in: Input{NamespaceLabels: map[string]string{}}}
	for _, tc := range []struct {
		name             string
		labels           map[string]string
		sa               string
		tunnel, identity string
		app, version     string
	}{
		{name: "outside the mesh", labels: map[string]string{"app": "web"}, app: "web", version: "latest"},
		{name: "enrolled pod", labels: map[string]string{api.LabelDataplaneMode: api.DataplaneModeAmbient, "app.kubernetes.io/name": "shop", "app": "web", "version": "v2"}, sa: "web",
			tunnel: "HBONE", identity: "spiffe://example.org/ns/shop/sa/web", app: "shop", version: "v2"},
		{name: "waypoint pod", labels: map[string]string{api.LabelGatewayName: "waypoint"}, sa: "waypoint",
			tunnel: "HBONE", identity: "spiffe://example.org/ns/shop/sa/waypoint", app: "p", version: "latest"},
		{name: "gateway label, other service account", labels: map[string]string{api.LabelGatewayName: "waypoint"}, sa: "intruder", app: "p", version: "latest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop", Labels: tc.labels}, Spec: corev1.PodSpec{ServiceAccountName: tc.sa}}
			f := b.endpointMetadata(pod).GetFilterMetadata()[MetadataKey].GetFields()
			str := func(k string) string { return f[k].GetStringValue() }
			if str(MetadataTunnel) != tc.tunnel || str(MetadataIdentity) != tc.identity || str(MetadataApp) != tc.app ||
				str(MetadataVersion) != tc.version || str(MetadataWorkload) != "p" || str(MetadataNamespace) != "shop" {
				t.Fatalf("metadata %v", f)
			}
		})
	}
	if b.endpointMetadata(nil) != nil {
		t.Fatal("metadata for an endpoint without a pod")
	}
}

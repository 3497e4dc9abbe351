package translate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	workloadv1 "github.com/weftmesh/weft/api/workload/v1"
)

// TestWaypointFor: istio.io/waypoint-for decides whether the Service, the Workload, both or
// neither get the waypoint.
func TestWaypointFor(t *testing.T) {
	for _, tc := range []struct {
		label               string // "" = absent
		wantSvc, wantWL     bool
		wantWarningsAtLeast int
	}{
		{"", true, false, 0},
		{"service", true, false, 0},
		{"workload", false, true, 0},
		{"all", true, true, 0},
		{"none", false, false, 0},
		{"bogus", true, false, 1},
	} {
		t.Run("for="+tc.label, func(t *testing.T) {
			gw := &gatewayv1.Gateway{
				ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "wp", Labels: map[string]string{}},
				Spec: gatewayv1.GatewaySpec{GatewayClassName: "istio-waypoint",
					Listeners: []gatewayv1.Listener{{Name: "mesh", Port: 15008, Protocol: "HBONE"}}},
			}
			if tc.label != "" {
				gw.Labels["istio.io/waypoint-for"] = tc.label
			}
			in := Input{
				Namespaces: []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{
					"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "wp"}}}},
				Pods: []*corev1.Pod{{
					ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
					Spec:       corev1.PodSpec{NodeName: "n"},
					Status:     corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: "198.18.0.5"}}},
				}},
				Services: []*corev1.Service{
					{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
						Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.5", Ports: []corev1.ServicePort{{Port: 80}}}},
					{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "wp", Labels: map[string]string{"gateway.networking.k8s.io/gateway-name": "wp"}},
						Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.9", Ports: []corev1.ServicePort{{Name: "mesh", Port: 15008}}}},
				},
				Gateways: []*gatewayv1.Gateway{gw},
			}
			m := Build(in, Options{})
			svc := m.Resources["shop/web.shop.svc.cluster.local"].Address.GetService()
			wl := m.Resources[WorkloadUID("Kubernetes", "shop", "web")].Address.GetWorkload()
			if got := svc.GetWaypoint() != nil; got != tc.wantSvc {
				t.Errorf("service waypoint = %v, want set %v", svc.GetWaypoint(), tc.wantSvc)
			}
			if got := wl.GetWaypoint() != nil; got != tc.wantWL {
				t.Errorf("workload waypoint = %v, want set %v", wl.GetWaypoint(), tc.wantWL)
			}
			for _, ga := range []*workloadv1.GatewayAddress{svc.GetWaypoint(), wl.GetWaypoint()} {
				if ga != nil && (ga.GetAddress() != "10.96.0.9" || ga.GetHostname() != "wp.shop.svc.cluster.local" || ga.GetHboneMtlsPort() != 15008) {
					t.Errorf("waypoint = %v, want the waypoint Service's VIP, hostname and port 15008", ga)
				}
			}
			if wp := m.Resources["shop/wp.shop.svc.cluster.local"].Address.GetService(); wp.GetWaypoint() != nil {
				t.Errorf("the waypoint's own Service has a waypoint: %v", wp.GetWaypoint())
			}
			if len(m.Warnings) < tc.wantWarningsAtLeast {
				t.Errorf("warnings = %v", m.Warnings)
			}
		})
	}
}

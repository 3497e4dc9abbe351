package mesh

import (
	"testing"

	"sigs.k8s.io/yaml"
)

func TestWaypointManifest(t *testing.T) {
	var gw struct {
		APIVersion, Kind string
		Metadata         struct{ Name, Namespace string }
		Spec             struct {
			GatewayClassName string `json:"gatewayClassName"`
			Listeners        []struct {
				Name     string
				Port     int
				Protocol string
			}
		}
	}
	if err := yaml.Unmarshal(WaypointManifest("bench", "waypoint"), &gw); err != nil {
		t.Fatal(err)
	}
	if gw.APIVersion != "gateway.networking.k8s.io/v1" || gw.Kind != "Gateway" || gw.Metadata.Name != "waypoint" ||
		gw.Metadata.Namespace != "bench" || gw.Spec.GatewayClassName != "istio-waypoint" {
		t.Errorf("gateway %+v", gw)
	}
	if len(gw.Spec.Listeners) != 1 || gw.Spec.Listeners[0].Port != 15008 || gw.Spec.Listeners[0].Protocol != "HBONE" {
		t.Errorf("listeners %+v, want one HBONE listener on 15008", gw.Spec.Listeners)
	}
}

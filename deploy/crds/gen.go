// Package crds holds the CustomResourceDefinitions Weft reads, copied from the istio.io/api
// module that go.mod pins into istio.yaml, and the Gateway API's standard channel (waypoints
// are Gateways) from the pinned sigs.k8s.io/gateway-api module into gateway-api.yaml
// (`make generate` refreshes both).
package crds

//go:generate go run ./internal/gencrds -o istio.yaml peerauthentications.security.istio.io authorizationpolicies.security.istio.io virtualservices.networking.istio.io destinationrules.networking.istio.io serviceentries.networking.istio.io
//go:generate go run ./internal/gencrds -gateway-api -o gateway-api.yaml gatewayclasses gateways httproutes grpcroutes referencegrants

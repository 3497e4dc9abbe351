// Package crds holds the CustomResourceDefinitions Weft reads, copied from the istio.io/api
// module that go.mod pins (`make generate` refreshes istio.yaml).
package crds

//go:generate go run ./internal/gencrds -o istio.yaml peerauthentications.security.istio.io authorizationpolicies.security.istio.io virtualservices.networking.istio.io destinationrules.networking.istio.io serviceentries.networking.istio.io

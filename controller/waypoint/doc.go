// Package waypoint deploys waypoints: for each Gateway API Gateway of class istio-waypoint it
// keeps, in the Gateway's namespace, the objects that run it, and writes the Gateway's status
// as istiod does.
//
// A waypoint is a Gateway with gatewayClassName istio-waypoint and exactly one listener on port
// 15008 with protocol HBONE (named mesh by convention). For it the Reconciler keeps:
//
//   - a ServiceAccount named as the Gateway (the waypoint's SPIFFE identity);
//   - a Service named as the Gateway: ClusterIP, port 15008 "mesh", selecting the label
//     gateway.networking.k8s.io/gateway-name=<name>;
//   - a Deployment named as the Gateway, created with one replica (later scaling by the user is
//     kept), its pods labelled gateway.networking.k8s.io/gateway-name=<name>,
//     istio.io/dataplane-mode=none (a waypoint terminates HBONE itself and is never captured)
//     and app.kubernetes.io/managed-by=weft, running the waypoint image with
//     --controller=<the controller's address> --gateway=<namespace>/<name>, POD_NAME,
//     POD_NAMESPACE, POD_IP and NODE_NAME from the downward API, a projected service-account
//     token of audience weft-ca at /var/run/secrets/tokens/weft-token, the CA roots at
//     /etc/weft/ca-root and a readiness probe GET :15021/healthz/ready;
//   - the ConfigMap weft-ca-root-cert with the CA's current roots, in every namespace with a
//     waypoint (other than the controller's, where the CA publishes it), owned by all the
//     waypoint Gateways of that namespace, so it goes when the last of them does.
//
// Each object has an ownerReference (controller: true, except the shared ConfigMap) to the
// Gateway, so deleting the Gateway deletes them. Writes happen only when an object is missing
// or differs from what is wanted (a digest of the wanted object is kept in the annotation
// weft.dev/config-digest), so reconciling again changes nothing. A Gateway of the class whose
// listeners are wrong is not deployed (a Deployment deployed for it before is removed).
//
// Gateway status, written only when it changes: Accepted (True, "Resource accepted"; False,
// reason ListenersNotValid, with Istio's message `Expected a single listener on port 15008
// with protocol "HBONE"`, which is also each listener's Accepted=False UnsupportedProtocol
// condition), Programmed (True, reason Programmed, once the Deployment has an available replica
// and the Service a cluster IP; else False with reason Pending or Invalid and what is missing),
// and status.addresses = the Service's cluster IP. The GatewayClass istio-waypoint is created
// when missing, with controllerName istio.io/mesh-controller (Istio's), and marked Accepted.
package waypoint

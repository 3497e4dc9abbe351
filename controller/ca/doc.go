// Package ca is the controller's SPIFFE certificate authority.
//
// It signs the X.509 SVIDs of workload identities (spiffe://<trust domain>/ns/<ns>/sa/<sa>) for
// node agents and waypoints over gRPC (weft.ca.v1.CertificateService), and the controller's own
// TLS serving certificate.
//
//   - Roots ([CA], roots.go): a user-supplied intermediate from the Secret "cacerts" in Istio's
//     plug-in format, or else a self-signed root kept in the Secret "weft-ca-secret", created on
//     first start with create-if-absent semantics so that racing replicas share one root. Both
//     Secrets are watched; a change is loaded without a restart, and a root that leaves the trust
//     set stays in the published bundle until the last leaf it may have signed has expired. The
//     bundle is published in the ConfigMap [api.RootCertConfigMap].
//   - Retired roots (retired.go): a root that leaves the trust set (a rotation changes
//     root-cert.pem, or the self-signed root is replaced) is recorded, with the time until which
//     it must be kept, in the Secret [RetiredRootsSecret], so that a restarted controller and the
//     other replicas keep publishing it. Every reload reads it, adds the roots that left the
//     trust set (the later end wins when two replicas retire the same root), drops the expired
//     entries and writes it back with a resourceVersion check, retrying on conflicts; the Secret
//     is watched, and every replica publishes its trust set followed by the retired roots in
//     their stored order, so replicas converge on one bundle. It also records the last trust
//     set, to retire the roots that left it while no controller ran (when the Secret is absent,
//     the roots of the published ConfigMap stand in for it). It is a dedicated Secret rather
//     than a key or an annotation of the ConfigMap: node agents read the ConfigMap verbatim and
//     it may be recreated by hand or by deployment tools, while this is the CA's own state, kept
//     beside its root in Secrets that only the controller can read, whose RBAC can name it.
//   - Authentication ([Authenticator]): the caller's service-account token, from the
//     "authorization: Bearer" metadata, checked with a TokenReview for audience
//     [api.TokenAudience]; positive answers are cached briefly, keyed by a hash of the token.
//   - Authorization ([Authorizer]): the node agent's service account may obtain the identity of a
//     service account only while a pod of that service account is scheduled on the agent's own
//     node; any other caller may obtain only its own identity (waypoints). Refusals are
//     PERMISSION_DENIED with the reason, and logged.
//
// Tokens and private keys are never logged.
package ca

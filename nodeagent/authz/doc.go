// Package authz is the node agent's L4 policy engine: it decides whether a connection to a
// workload is allowed by the Istio AuthorizationPolicies that apply to it
// ([state.Snapshot.PoliciesFor]), with Istio's semantics:
//
//   - DENY first: a connection that matches any DENY policy is denied.
//   - Then ALLOW: when ALLOW policies apply, the connection must match one of them; when none
//     applies, it is allowed (Istio's default allow).
//   - AUDIT policies that match are reported in [Decision.Audited] and never change the
//     decision. CUSTOM is not representable: the controller reports it as not supported.
//   - A policy matches when one of its rules does; a policy without rules matches nothing. A
//     rule matches when all its clauses do; a rule without clauses matches everything
//     (`rules: [{}]`). A clause matches when one of its matches does (the entries of `from`,
//     of `to`, the values of a `when`). Within a match, the fields that are set are AND-ed;
//     a positive field matches when one of its values does, a not-field when none does.
//   - Principals and namespaces come from the peer's mTLS identity. A plaintext connection has
//     neither: a positive principals or namespaces field never matches it, a not-field always
//     does (so `notPrincipals: ["*"]` matches exactly the plaintext connections).
//
// [Evaluate] is pure, safe for concurrent use, and does not allocate unless an AUDIT policy
// matches; [Decision.Reason] formats the one-line explanation for logs on demand.
package authz

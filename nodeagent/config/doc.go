// Package config delivers the node agent's configuration: the workloads, services, effective
// PeerAuthentication and authorization policies that make a [state.Snapshot].
//
// A [Source] runs until its context ends and hands the agent a full snapshot at start and at
// every change. The agent may reject a snapshot (a NACK, as in xDS): the source then reports
// why, the last good snapshot stays in force, and nothing is delivered again until the
// configuration changes. [FileSource] reads a local file; the controller's workload-discovery
// xDS client (package nodeagent/xds) is the other source, behind the same interface.
//
// # File format
//
// The file is YAML or JSON (sigs.k8s.io/yaml reads both) with three lists, workloads,
// services and authorizations. Field names are those of Istio's workload API
// (istio.workload.Workload, istio.workload.Service and Weft's Authorization, modelled on
// istio.security.Authorization) in camelCase; enumerations take Istio's names. Decoding is strict:
// an unknown field, a duplicate key, a value of the wrong type, a malformed address or a port
// out of range is an error that names the field and tells how to fix it, for example
//
//	config: /etc/weft/mesh.yaml: workloads[3].addresses[0]: "10.0.0.x" is not an IP address; write an IPv4 or IPv6 address
//	config: /etc/weft/mesh.yaml: workloads[0].nmae: unknown field; did you mean "name"?
//
// followed by the checks of [state.Snapshot.Validate] (duplicate UIDs and addresses, endpoints
// naming unknown workloads, ...). An empty file is an error too: write "workloads: []" for a
// configuration without workloads.
//
//	workloads:
//	  - uid: Kubernetes//Pod/shop/web-5d8f7-abcde   # unique; required
//	    name: web-5d8f7-abcde                       # required
//	    namespace: shop                             # required
//	    serviceAccount: web                         # default "default"
//	    trustDomain: cluster.local                  # default "cluster.local"
//	    node: node-a
//	    clusterId: Kubernetes
//	    addresses: [10.244.1.5, "fd00:244:1::5"]    # at least one
//	    tunnelProtocol: HBONE                       # HBONE (in the mesh) or NONE (default)
//	    nativeTunnel: false                         # true: a waypoint (reached over HBONE, never captured)
//	    status: HEALTHY                             # HEALTHY (default) or UNHEALTHY
//	    workloadName: web
//	    workloadType: DEPLOYMENT                    # DEPLOYMENT (default), CRONJOB, POD, JOB
//	    canonicalName: web
//	    canonicalRevision: v1
//	    labels: {app: web, version: v1}
//	    excludeInboundPorts: [15020]                # traffic.sidecar.istio.io/excludeInboundPorts
//	    excludeOutboundPorts: [5432]                # traffic.sidecar.istio.io/excludeOutboundPorts
//	    peerAuthentication:                         # effective; shaped like Istio's spec
//	      mtls: {mode: STRICT}                      # UNSET (= PERMISSIVE), DISABLE, PERMISSIVE, STRICT
//	      portLevelMtls:
//	        9090: {mode: PERMISSIVE}
//	    authorizationPolicies: [shop/allow-gw]      # "<namespace>/<name>" of the selecting policies
//	services:
//	  - name: web
//	    namespace: shop
//	    hostname: web.shop.svc.cluster.local        # required; unique per namespace
//	    vips: [10.96.0.10, "fd00:96::10"]
//	    ports:
//	      - {name: http, port: 80, targetPort: 8080, appProtocol: HTTP11}  # UNKNOWN, HTTP11, HTTP2, GRPC
//	      - {name: metrics, port: 9090}             # targetPort defaults to port
//	    endpoints:
//	      - workloadUid: Kubernetes//Pod/shop/web-5d8f7-abcde
//	        ports: {80: 8081}                       # optional per-endpoint target ports
//	    waypoint:                                   # traffic to the VIPs traverses this waypoint
//	      namespace: shop                           # with hostname: the waypoint's Service;
//	      hostname: waypoint.shop.svc.cluster.local # its endpoints are the waypoint's pods
//	      address: 10.96.0.20                       # or the Service's VIP (either, or both)
//	      hboneMtlsPort: 15008
//	      fallbackDirect: false                     # true: bypass it while it has no ready pod
//	authorizations:                                 # AuthorizationPolicies as enforced at L4
//	  - name: allow-gw                              # required; unique with the namespace
//	    namespace: shop                             # required
//	    scope: WORKLOAD_SELECTOR                    # (default) the workloads naming it, NAMESPACE, GLOBAL
//	    action: ALLOW                               # ALLOW (default), DENY, AUDIT
//	    rules:                                      # OR-ed; without rules it matches nothing
//	      - clauses:                                # AND-ed; a rule without clauses ({}) matches all
//	          - matches:                            # OR-ed; the fields of a match are AND-ed
//	              - principals: [cluster.local/ns/shop/sa/gw]  # also namespaces; not* negates
//	                sourceIps: [10.244.0.0/16]      # also destinationIps; CIDR or single address
//	          - matches:
//	              - destinationPorts: [8080]        # also notDestinationPorts
//
// String matches take Istio's forms: exact "a", prefix "a*", suffix "*a" and "*" for any
// value; principals and namespaces never match a plaintext connection (their not-forms always
// do). The policies that apply to a workload are the GLOBAL ones, the NAMESPACE ones of its
// namespace and those it names in authorizationPolicies, which must exist.
//
// testdata/example.yaml is a complete, commented example.
//
// The snapshot's version is the first 16 hex digits of the SHA-256 of the file's content, so
// the same content always has the same version.
package config

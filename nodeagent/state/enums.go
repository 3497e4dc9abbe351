package state

import (
	"fmt"
	"strconv"
)

// The enumerations below keep the numbering and the names of Istio's protobuf enums, so that
// a value received over xDS converts with a cast and the text form is the one Istio users know.

// TunnelProtocol tells how traffic reaches a workload: NONE when it is not in the mesh (plain
// TCP), HBONE when the workload is enrolled and accepts HBONE on port 15008.
type TunnelProtocol uint8

// Tunnel protocols (istio.workload.TunnelProtocol).
const (
	TunnelNone  TunnelProtocol = 0 // NONE: not in the mesh
	TunnelHBONE TunnelProtocol = 1 // HBONE: enrolled in the mesh
)

var tunnelProtocolNames = []string{"NONE", "HBONE"}

func (p TunnelProtocol) String() string { return enumString(tunnelProtocolNames, p, "TunnelProtocol") }

// MarshalText implements encoding.TextMarshaler.
func (p TunnelProtocol) MarshalText() ([]byte, error) {
	return enumMarshal(tunnelProtocolNames, p, "tunnel protocol")
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *TunnelProtocol) UnmarshalText(b []byte) error {
	return enumUnmarshal(tunnelProtocolNames, p, b, "a tunnel protocol")
}

// WorkloadStatus is the health of a workload. Only healthy workloads are picked as service
// endpoints.
type WorkloadStatus uint8

// Workload statuses (istio.workload.WorkloadStatus).
const (
	Healthy   WorkloadStatus = 0 // HEALTHY
	Unhealthy WorkloadStatus = 1 // UNHEALTHY
)

var workloadStatusNames = []string{"HEALTHY", "UNHEALTHY"}

func (s WorkloadStatus) String() string { return enumString(workloadStatusNames, s, "WorkloadStatus") }

// MarshalText implements encoding.TextMarshaler.
func (s WorkloadStatus) MarshalText() ([]byte, error) {
	return enumMarshal(workloadStatusNames, s, "workload status")
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *WorkloadStatus) UnmarshalText(b []byte) error {
	return enumUnmarshal(workloadStatusNames, s, b, "a workload status")
}

// WorkloadType is the kind of the controller that owns a workload's pod, used with the
// workload name in baggage and metrics.
type WorkloadType uint8

// Workload types (istio.workload.WorkloadType).
const (
	Deployment WorkloadType = 0 // DEPLOYMENT
	CronJob    WorkloadType = 1 // CRONJOB
	Pod        WorkloadType = 2 // POD
	Job        WorkloadType = 3 // JOB
)

var workloadTypeNames = []string{"DEPLOYMENT", "CRONJOB", "POD", "JOB"}

func (t WorkloadType) String() string { return enumString(workloadTypeNames, t, "WorkloadType") }

// BaggageKind returns the kind as the HBONE baggage header spells it in k8s.<kind>.name:
// deployment, cronjob, pod or job.
func (t WorkloadType) BaggageKind() string {
	switch t {
	case CronJob:
		return "cronjob"
	case Pod:
		return "pod"
	case Job:
		return "job"
	default:
		return "deployment"
	}
}

// MarshalText implements encoding.TextMarshaler.
func (t WorkloadType) MarshalText() ([]byte, error) {
	return enumMarshal(workloadTypeNames, t, "workload type")
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *WorkloadType) UnmarshalText(b []byte) error {
	return enumUnmarshal(workloadTypeNames, t, b, "a workload type")
}

// Mode is a PeerAuthentication mutual TLS mode.
type Mode uint8

// PeerAuthentication modes (istio.security.v1beta1.PeerAuthentication.MutualTLS.Mode).
const (
	// ModeUnset inherits: a port-level UNSET falls back to the workload's mode, a workload's
	// UNSET to PERMISSIVE.
	ModeUnset Mode = 0
	// ModeDisable accepts plaintext only; the agent does not terminate mTLS for the port.
	ModeDisable Mode = 1
	// ModePermissive accepts both mTLS (HBONE) and plaintext.
	ModePermissive Mode = 2
	// ModeStrict accepts mTLS (HBONE) only and refuses plaintext.
	ModeStrict Mode = 3
)

var modeNames = []string{"UNSET", "DISABLE", "PERMISSIVE", "STRICT"}

func (m Mode) String() string { return enumString(modeNames, m, "Mode") }

// MarshalText implements encoding.TextMarshaler.
func (m Mode) MarshalText() ([]byte, error) { return enumMarshal(modeNames, m, "mode") }

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *Mode) UnmarshalText(b []byte) error { return enumUnmarshal(modeNames, m, b, "a mode") }

// AppProtocol is the application protocol of a service port, when known.
type AppProtocol uint8

// Application protocols (istio.workload.AppProtocol).
const (
	ProtocolUnknown AppProtocol = 0 // UNKNOWN: treated as opaque TCP
	ProtocolHTTP11  AppProtocol = 1 // HTTP11
	ProtocolHTTP2   AppProtocol = 2 // HTTP2
	ProtocolGRPC    AppProtocol = 3 // GRPC
)

var appProtocolNames = []string{"UNKNOWN", "HTTP11", "HTTP2", "GRPC"}

func (p AppProtocol) String() string { return enumString(appProtocolNames, p, "AppProtocol") }

// MarshalText implements encoding.TextMarshaler.
func (p AppProtocol) MarshalText() ([]byte, error) {
	return enumMarshal(appProtocolNames, p, "app protocol")
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *AppProtocol) UnmarshalText(b []byte) error {
	return enumUnmarshal(appProtocolNames, p, b, "an app protocol")
}

func enumString[E ~uint8](names []string, v E, typ string) string {
	if int(v) < len(names) {
		return names[v]
	}
	return typ + "(" + strconv.Itoa(int(v)) + ")"
}

func enumMarshal[E ~uint8](names []string, v E, what string) ([]byte, error) {
	if int(v) < len(names) {
		return []byte(names[v]), nil
	}
	return nil, fmt.Errorf("state: unknown %s %d", what, v)
}

func enumUnmarshal[E ~uint8](names []string, v *E, b []byte, what string) error {
	for i, n := range names {
		if n == string(b) {
			*v = E(i)
			return nil
		}
	}
	// No package prefix: the text is meant to follow a field path (see FieldError).
	return fmt.Errorf("%q is not %s; write %s", b, what, orList(names))
}

func enumValid[E ~uint8](names []string, v E) bool { return int(v) < len(names) }

// orList formats names as "A, B or C".
func orList(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return names[0]
	}
	s := ""
	for i, n := range names[:len(names)-1] {
		if i > 0 {
			s += ", "
		}
		s += n
	}
	return s + " or " + names[len(names)-1]
}

// AuthorizationScope says which workloads an [Authorization] applies to.
type AuthorizationScope uint8

// Authorization scopes (weft.workload.v1.AuthorizationScope).
const (
	// ScopeWorkloadSelector: the workloads whose AuthorizationPolicies name the policy.
	ScopeWorkloadSelector AuthorizationScope = 0
	// ScopeNamespace: every workload of the policy's namespace (a policy without selector).
	ScopeNamespace AuthorizationScope = 1
	// ScopeGlobal: every workload of the mesh (a policy without selector in the root
	// namespace).
	ScopeGlobal AuthorizationScope = 2
)

var authorizationScopeNames = []string{"WORKLOAD_SELECTOR", "NAMESPACE", "GLOBAL"}

func (s AuthorizationScope) String() string {
	return enumString(authorizationScopeNames, s, "AuthorizationScope")
}

// MarshalText implements encoding.TextMarshaler.
func (s AuthorizationScope) MarshalText() ([]byte, error) {
	return enumMarshal(authorizationScopeNames, s, "authorization scope")
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *AuthorizationScope) UnmarshalText(b []byte) error {
	return enumUnmarshal(authorizationScopeNames, s, b, "an authorization scope")
}

// AuthorizationAction is what a matching [Authorization] does. Istio's CUSTOM action has no
// value here: the controller reports such a policy as not supported and does not send it.
type AuthorizationAction uint8

// Authorization actions (weft.workload.v1.AuthorizationAction).
const (
	ActionAllow AuthorizationAction = 0 // ALLOW: when ALLOW policies apply, one must match
	ActionDeny  AuthorizationAction = 1 // DENY: a match denies
	ActionAudit AuthorizationAction = 2 // AUDIT: a match is recorded, the decision unchanged
)

var authorizationActionNames = []string{"ALLOW", "DENY", "AUDIT"}

func (a AuthorizationAction) String() string {
	return enumString(authorizationActionNames, a, "AuthorizationAction")
}

// MarshalText implements encoding.TextMarshaler.
func (a AuthorizationAction) MarshalText() ([]byte, error) {
	return enumMarshal(authorizationActionNames, a, "authorization action")
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *AuthorizationAction) UnmarshalText(b []byte) error {
	return enumUnmarshal(authorizationActionNames, a, b, "an authorization action")
}

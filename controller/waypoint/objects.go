package waypoint

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/api"
)

// Labels and annotations of the deployed objects.
const (
	LabelManagedBy   = "app.kubernetes.io/managed-by"
	ManagedBy        = "weft"
	AnnotationDigest = "weft.dev/config-digest"
	// Container paths, as the node agent's (deploy/manifests/weft.yaml).
	TokenDir  = "/var/run/secrets/tokens"
	TokenFile = "weft-token"
	RootsDir  = "/etc/weft/ca-root"
	// Ports of the waypoint container.
	MetricsPort = 15020
	ReadyPort   = 15021
)

func ownerRef(gw *gatewayv1.Gateway, controller bool) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion: gatewayv1.GroupVersion.String(),
		Kind:       "Gateway",
		Name:       gw.Name,
		UID:        gw.UID,
		Controller: &controller,
	}
}

func objectMeta(gw *gatewayv1.Gateway) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:      gw.Name,
		Namespace: gw.Namespace,
		Labels: map[string]string{
			api.LabelGatewayName: gw.Name,
			LabelManagedBy:       ManagedBy,
		},
		OwnerReferences: []metav1.OwnerReference{ownerRef(gw, true)},
	}
}

// digest is a short digest of v's JSON, the annotation that says an object is as wanted.
func digest(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // the objects built here always marshal
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func withDigest(m *metav1.ObjectMeta, spec any) {
	m.Annotations = map[string]string{AnnotationDigest: digest([]any{m.Labels, m.OwnerReferences, spec})}
}

// ServiceAccount is the waypoint's identity.
func ServiceAccount(gw *gatewayv1.Gateway) *corev1.ServiceAccount {
	sa := &corev1.ServiceAccount{ObjectMeta: objectMeta(gw)}
	withDigest(&sa.ObjectMeta, nil)
	return sa
}

// Service fronts the waypoint's pods on the HBONE port.
func Service(gw *gatewayv1.Gateway) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: objectMeta(gw),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: map[string]string{api.LabelGatewayName: gw.Name},
			Ports: []corev1.ServicePort{{
				Name: api.WaypointListener, Port: api.WaypointPort, Protocol: corev1.ProtocolTCP,
				TargetPort: intstr.FromInt32(api.WaypointPort),
			}},
		},
	}
	withDigest(&svc.ObjectMeta, svc.Spec)
	return svc
}

// Deployment runs the waypoint; see the package documentation.
func Deployment(gw *gatewayv1.Gateway, image, controllerAddr string) *appsv1.Deployment {
	replicas := int32(1)
	expiry := int64(43200)
	noToken := false
	podLabels := map[string]string{
		api.LabelGatewayName:   gw.Name,
		api.LabelDataplaneMode: api.DataplaneModeNone,
		LabelManagedBy:         ManagedBy,
	}
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	args := []string{"--controller=" + controllerAddr, "--gateway=" + gw.Namespace + "/" + gw.Name}
	if gw.Annotations[api.AnnotationAccessLog] == "true" {
		args = append(args, "--access-log")
	}
	d := &appsv1.Deployment{
		ObjectMeta: objectMeta(gw),
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{api.LabelGatewayName: gw.Name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					ServiceAccountName:           gw.Name,
					AutomountServiceAccountToken: &noToken, // it never reads the Kubernetes API
					Containers: []corev1.Container{{
						Name:  "waypoint",
						Image: image,
						Args:  args,
						Env: []corev1.EnvVar{
							field("POD_NAME", "metadata.name"),
							field("POD_NAMESPACE", "metadata.namespace"),
							field("POD_IP", "status.podIP"),
							field("NODE_NAME", "spec.nodeName"),
						},
						Ports: []corev1.ContainerPort{
							{Name: api.WaypointListener, ContainerPort: api.WaypointPort, Protocol: corev1.ProtocolTCP},
							{Name: "metrics", ContainerPort: MetricsPort, Protocol: corev1.ProtocolTCP},
							{Name: "ready", ContainerPort: ReadyPort, Protocol: corev1.ProtocolTCP},
						},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
								Path: "/healthz/ready", Port: intstr.FromInt32(ReadyPort),
							}},
							PeriodSeconds: 1,
						},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "ca-root", MountPath: RootsDir, ReadOnly: true},
							{Name: "token", MountPath: TokenDir, ReadOnly: true},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "ca-root", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: api.RootCertConfigMap},
						}}},
						{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
							Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
								Path: TokenFile, Audience: api.TokenAudience, ExpirationSeconds: &expiry,
							}}},
						}}},
					},
				},
			},
		},
	}
	// The digest leaves replicas out: scaling the Deployment is the user's.
	spec := d.Spec
	spec.Replicas = nil
	withDigest(&d.ObjectMeta, spec)
	return d
}

// RootsConfigMap holds the CA's roots in a waypoint's namespace, owned by the namespace's
// waypoint Gateways (none is its controller: it goes with the last of them).
func RootsConfigMap(namespace, pem string, owners []*gatewayv1.Gateway) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:      api.RootCertConfigMap,
			Namespace: namespace,
			Labels:    map[string]string{LabelManagedBy: ManagedBy},
		},
		Data: map[string]string{api.RootCertKey: pem},
	}
	for _, gw := range owners {
		cm.OwnerReferences = append(cm.OwnerReferences, ownerRef(gw, false))
	}
	withDigest(&cm.ObjectMeta, cm.Data)
	return cm
}

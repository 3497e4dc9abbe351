package translate

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/api"
	workloadv1 "github.com/weftmesh/weft/api/workload/v1"
)

// WorkloadUID is the uid of a pod's workload, "<cluster>//Pod/<namespace>/<name>" as in Istio.
func WorkloadUID(clusterID, namespace, name string) string {
	return clusterID + "//Pod/" + namespace + "/" + name
}

// Enrolled reports whether pod is in the mesh given its namespace's labels (nil when the
// namespace is unknown).
func Enrolled(pod *corev1.Pod, nsLabels map[string]string) bool {
	if pod.Spec.HostNetwork {
		return false
	}
	switch pod.Labels[api.LabelDataplaneMode] {
	case api.DataplaneModeAmbient:
		return true
	case api.DataplaneModeNone:
		return false
	}
	return nsLabels[api.LabelDataplaneMode] == api.DataplaneModeAmbient
}

// workload translates a pod. It returns nil for a pod that is not a workload (yet): not
// scheduled, finished, or host-network (it shares the node's address). A pod scheduled but not
// started has no address yet: its node's agent gets it anyway, to enroll it from the CNI
// plugin's report before its containers start. Problems that do not prevent the
// translation (a malformed annotation) are returned as warnings.
func workload(pod *corev1.Pod, nsLabels map[string]string, pa *peerAuthIndex, wps *waypoints, o Options) (*workloadv1.Workload, []error) {
	if pod.Spec.HostNetwork || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil, nil
	}
	var addrs []string
	for _, ip := range pod.Status.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil {
			addrs = append(addrs, a.String())
		}
	}
	if len(addrs) == 0 && pod.Status.PodIP != "" {
		if a, err := netip.ParseAddr(pod.Status.PodIP); err == nil {
			addrs = append(addrs, a.String())
		}
	}
	if len(addrs) == 0 && pod.Spec.NodeName == "" {
		return nil, nil // not scheduled yet
	}
	w := &workloadv1.Workload{
		Uid:               WorkloadUID(o.ClusterID, pod.Namespace, pod.Name),
		Name:              pod.Name,
		Namespace:         pod.Namespace,
		ServiceAccount:    cmp.Or(pod.Spec.ServiceAccountName, "default"),
		TrustDomain:       o.TrustDomain,
		Node:              pod.Spec.NodeName,
		ClusterId:         o.ClusterID,
		Addresses:         addrs,
		Status:            workloadv1.WorkloadStatus_UNHEALTHY,
		CanonicalName:     canonicalName(pod),
		CanonicalRevision: canonicalRevision(pod),
		Labels:            pod.Labels,
	}
	if podReady(pod) {
		w.Status = workloadv1.WorkloadStatus_HEALTHY
	}
	w.WorkloadName, w.WorkloadType = owner(pod)
	var warnings []error
	if wps.podGateway(pod) != nil {
		// A waypoint's pod terminates HBONE itself: reached through the tunnel, never
		// captured, whatever its namespace's mode; waypoints have no waypoint.
		w.TunnelProtocol = workloadv1.TunnelProtocol_HBONE
		w.NativeTunnel = true
		return w, nil
	}
	if !Enrolled(pod, nsLabels) {
		return w, nil
	}
	w.TunnelProtocol = workloadv1.TunnelProtocol_HBONE
	w.PeerAuthentication = pa.resolve(pod)
	var wp *Waypoint
	if w.Waypoint, wp = wps.resolve(forWorkload, "Pod "+pod.Namespace+"/"+pod.Name, pod.Namespace, pod.Labels); wp != nil {
		wp.Workloads = append(wp.Workloads, w.Uid)
	}
	var err error
	if w.ExcludeInboundPorts, err = annotationPorts(pod, api.AnnotationExcludeInboundPorts); err != nil {
		warnings = append(warnings, err)
	}
	if w.ExcludeOutboundPorts, err = annotationPorts(pod, api.AnnotationExcludeOutboundPorts); err != nil {
		warnings = append(warnings, err)
	}
	return w, warnings
}

func podReady(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// owner names the workload that owns pod, as Istio's workload name and type: the Deployment of
// a ReplicaSet (its name without the pod-template-hash), the CronJob or Job of a Job pod, the
// StatefulSet or DaemonSet, or the pod itself.
func owner(pod *corev1.Pod) (string, workloadv1.WorkloadType) {
	for _, ref := range pod.OwnerReferences {
		if ref.Controller == nil || !*ref.Controller {
			continue
		}
		switch ref.Kind {
		case "ReplicaSet":
			if hash := pod.Labels["pod-template-hash"]; hash != "" {
				if name, ok := strings.CutSuffix(ref.Name, "-"+hash); ok {
					return name, workloadv1.WorkloadType_DEPLOYMENT
				}
			}
			return ref.Name, workloadv1.WorkloadType_DEPLOYMENT
		case "Job":
			// A CronJob's jobs are named <cronjob>-<scheduled minute>.
			if i := strings.LastIndexByte(ref.Name, '-'); i > 0 {
				if _, err := strconv.ParseUint(ref.Name[i+1:], 10, 64); err == nil && len(ref.Name)-i-1 >= 8 {
					return ref.Name[:i], workloadv1.WorkloadType_CRONJOB
				}
			}
			return ref.Name, workloadv1.WorkloadType_JOB
		default:
			return ref.Name, workloadv1.WorkloadType_DEPLOYMENT
		}
	}
	return pod.Name, workloadv1.WorkloadType_POD
}

func canonicalName(pod *corev1.Pod) string {
	for _, k := range []string{api.LabelCanonicalName, "app.kubernetes.io/name", "app"} {
		if v := pod.Labels[k]; v != "" {
			return v
		}
	}
	name, _ := owner(pod)
	return name
}

func canonicalRevision(pod *corev1.Pod) string {
	for _, k := range []string{api.LabelCanonicalRevision, "app.kubernetes.io/version", "version"} {
		if v := pod.Labels[k]; v != "" {
			return v
		}
	}
	return "latest"
}

// annotationPorts parses a port-list annotation ("15020, 9090"): sorted, without duplicates.
func annotationPorts(pod *corev1.Pod, key string) ([]uint32, error) {
	v, ok := pod.Annotations[key]
	if !ok {
		return nil, nil
	}
	var ports []uint32
	for f := range strings.SplitSeq(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := strconv.ParseUint(f, 10, 16)
		if err != nil || p == 0 {
			return nil, fmt.Errorf("pod %s/%s: annotation %s: %q is not a port number (1-65535); write ports separated by commas, e.g. \"15020,9090\"; the annotation is ignored", pod.Namespace, pod.Name, key, f)
		}
		ports = append(ports, uint32(p))
	}
	slices.Sort(ports)
	return slices.Compact(ports), nil
}

package ca

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// NodeNameIndex is the name of the pod informer index by spec.nodeName that [InformerPods]
// uses; [NodeNameIndexFunc] computes it.
const NodeNameIndex = "spec.nodeName"

// PodLister answers the CA's questions about pods, from a cache.
type PodLister interface {
	// PodsOnNode returns the pods whose spec.nodeName is node.
	PodsOnNode(node string) ([]*corev1.Pod, error)
	// Pod returns the pod namespace/name, or nil and no error when it is not known.
	Pod(namespace, name string) (*corev1.Pod, error)
}

// NodeNameIndexFunc indexes pods by spec.nodeName; unscheduled pods are not indexed.
func NodeNameIndexFunc(obj any) ([]string, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName == "" {
		return nil, nil
	}
	return []string{pod.Spec.NodeName}, nil
}

// InformerPods is a PodLister over a pod SharedIndexInformer.
type InformerPods struct {
	inf cache.SharedIndexInformer
}

var _ PodLister = (*InformerPods)(nil)

// NewInformerPods returns a PodLister over inf, a SharedIndexInformer of Pods (all namespaces).
// It adds the index [NodeNameIndex] unless inf already has it; that works before and after inf
// starts. The caller runs inf; until it has synced, answers may be incomplete.
func NewInformerPods(inf cache.SharedIndexInformer) (*InformerPods, error) {
	if _, ok := inf.GetIndexer().GetIndexers()[NodeNameIndex]; !ok {
		if err := inf.AddIndexers(cache.Indexers{NodeNameIndex: NodeNameIndexFunc}); err != nil {
			return nil, fmt.Errorf("ca: pod informer: add index %s: %w", NodeNameIndex, err)
		}
	}
	return &InformerPods{inf: inf}, nil
}

// PodsOnNode implements PodLister.
func (p *InformerPods) PodsOnNode(node string) ([]*corev1.Pod, error) {
	objs, err := p.inf.GetIndexer().ByIndex(NodeNameIndex, node)
	if err != nil {
		return nil, fmt.Errorf("ca: pods on node %s: %w", node, err)
	}
	pods := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if pod, ok := o.(*corev1.Pod); ok {
			pods = append(pods, pod)
		}
	}
	return pods, nil
}

// Pod implements PodLister.
func (p *InformerPods) Pod(namespace, name string) (*corev1.Pod, error) {
	o, ok, err := p.inf.GetIndexer().GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil, err
	}
	pod, _ := o.(*corev1.Pod)
	return pod, nil
}

// HasSynced reports whether the informer has synced.
func (p *InformerPods) HasSynced() bool { return p.inf.HasSynced() }

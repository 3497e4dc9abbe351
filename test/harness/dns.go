package harness

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

//go:embed manifests/coredns.yaml
var corednsManifest []byte

// defaultWait bounds the harness's waits for the cluster to converge.
const defaultWait = 2 * time.Minute

// deployDNS deploys CoreDNS and waits until its Deployment is available.
func (c *Cluster) deployDNS(ctx context.Context) error {
	if err := c.Apply(ctx, "kube-system", corednsManifest); err != nil {
		return fmt.Errorf("harness: dns: %w", err)
	}
	return c.WaitDeploymentReady(ctx, "kube-system", "coredns", defaultWait)
}

// WaitDeploymentReady waits until every replica of a Deployment is updated and available.
func (c *Cluster) WaitDeploymentReady(ctx context.Context, ns, name string, timeout time.Duration) error {
	return WaitFor(ctx, timeout, "deployment "+ns+"/"+name, func(ctx context.Context) (bool, error) {
		d, err := c.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		s := d.Status
		return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.AvailableReplicas == want && s.Replicas == want, nil
	})
}

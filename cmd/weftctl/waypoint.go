package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/api"
)

// waypointFlags are the flags of the waypoint commands.
type waypointFlags struct {
	name        string
	enroll      bool
	forType     string
	wait        bool
	waitTimeout time.Duration
	all         bool
}

// newWaypointCommand returns `weftctl waypoint apply|delete|list`.
func newWaypointCommand(connect connectFunc, f *flags) *cobra.Command {
	wf := &waypointFlags{}
	cmd := &cobra.Command{
		Use:   "waypoint",
		Short: "Deploy, remove and list waypoints (Gateways of class istio-waypoint)",
	}
	apply := &cobra.Command{
		Use:   "apply",
		Short: "Create or update a namespace's waypoint; the controller deploys it",
		Long: `Create or update the Gateway of class istio-waypoint (one listener: mesh, port 15008, HBONE)
that the controller deploys as the namespace's waypoint. --enroll-namespace labels the
namespace istio.io/use-waypoint=<name>, so its services' traffic goes through the waypoint;
--for sets istio.io/waypoint-for (service, workload, all or none); --wait waits until the
waypoint is programmed (its Deployment has a ready replica).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClients(cmd, connect, f, func(ctx context.Context, c *clients, ns string) error {
				return waypointApply(ctx, c, ns, wf, cmd.OutOrStdout())
			})
		},
	}
	apply.Flags().StringVar(&wf.name, "name", "waypoint", "the waypoint's name")
	apply.Flags().BoolVar(&wf.enroll, "enroll-namespace", false, "label the namespace istio.io/use-waypoint=<name>")
	apply.Flags().StringVar(&wf.forType, "for", api.WaypointForService, "traffic the waypoint handles: service, workload, all or none")
	apply.Flags().BoolVar(&wf.wait, "wait", false, "wait until the waypoint is programmed")
	apply.Flags().DurationVar(&wf.waitTimeout, "wait-timeout", 2*time.Minute, "how long --wait waits")

	del := &cobra.Command{
		Use:   "delete",
		Short: "Delete a namespace's waypoint (the controller's Deployment, Service and ServiceAccount go with it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClients(cmd, connect, f, func(ctx context.Context, c *clients, ns string) error {
				return waypointDelete(ctx, c, ns, wf.name, cmd.OutOrStdout())
			})
		},
	}
	del.Flags().StringVar(&wf.name, "name", "waypoint", "the waypoint's name")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the waypoints of a namespace (-A: of every namespace): for, programmed, address",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.output != "table" && f.output != "json" {
				return fmt.Errorf("-o %s: the output format is table or json", f.output)
			}
			return withClients(cmd, connect, f, func(ctx context.Context, c *clients, ns string) error {
				if wf.all {
					ns = ""
				}
				return waypointList(ctx, c, ns, f.output == "json", cmd.OutOrStdout())
			})
		},
	}
	list.Flags().BoolVarP(&wf.all, "all-namespaces", "A", false, "list the waypoints of every namespace")
	cmd.AddCommand(apply, del, list)
	return cmd
}

// withClients connects and resolves the namespace as run does.
func withClients(cmd *cobra.Command, connect connectFunc, f *flags, do func(context.Context, *clients, string) error) error {
	c, err := connect(f)
	if err != nil {
		return err
	}
	if c.gateway == nil {
		return errors.New("no Gateway API client: the waypoint commands need the gateway.networking.k8s.io API")
	}
	ns := f.namespace
	if ns == "" {
		ns = c.namespace
	}
	if ns == "" {
		ns = "default"
	}
	return do(cmd.Context(), c, ns)
}

// gatewayError explains a failed Gateway API call; NotFound of the resource type means the
// CRDs are not installed.
func gatewayError(c *clients, what string, err error) error {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return fmt.Errorf("cannot reach the cluster at %s: %v; check --kubeconfig (or KUBECONFIG, --context) and that the apiserver is running", c.server, err)
	}
	if crdMissing(err) {
		return fmt.Errorf("%s: the Gateway API is not installed in the cluster; install its CRDs with kubectl apply --server-side -f deploy/crds/gateway-api.yaml", what)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// crdMissing tells a NotFound of the resource type (the CRD is not installed) from that of
// one object (which names it).
func crdMissing(err error) bool {
	var status apierrors.APIStatus
	if !apierrors.IsNotFound(err) || !errors.As(err, &status) {
		return false
	}
	d := status.Status().Details
	return d == nil || d.Name == ""
}

// waypointGateway is the Gateway `waypoint apply` writes.
func waypointGateway(ns, name, forType string) *gatewayv1.Gateway {
	return &gatewayv1.Gateway{
		TypeMeta: metav1.TypeMeta{APIVersion: gatewayv1.GroupVersion.String(), Kind: "Gateway"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name,
			Labels: map[string]string{api.LabelWaypointFor: forType},
		},
		Spec: gatewayv1.GatewaySpec{
			GatewayClassName: api.WaypointGatewayClass,
			Listeners: []gatewayv1.Listener{{
				Name: api.WaypointListener, Port: api.WaypointPort, Protocol: api.WaypointProtocol,
			}},
		},
	}
}

func waypointApply(ctx context.Context, c *clients, ns string, wf *waypointFlags, w io.Writer) error {
	switch wf.forType {
	case api.WaypointForService, api.WaypointForWorkload, api.WaypointForAll, api.WaypointForNone:
	default:
		return fmt.Errorf("--for %s: the waypoint handles service, workload, all or none", wf.forType)
	}
	if wf.name == "" {
		return errors.New("--name: the waypoint needs a name")
	}
	want := waypointGateway(ns, wf.name, wf.forType)
	gws := c.gateway.GatewayV1().Gateways(ns)
	cur, err := gws.Get(ctx, wf.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err) && !crdMissing(err):
		if _, err := gws.Create(ctx, want, metav1.CreateOptions{}); err != nil {
			return gatewayError(c, "create Gateway "+ns+"/"+wf.name, err)
		}
		fmt.Fprintf(w, "waypoint %s/%s created\n", ns, wf.name)
	case err != nil:
		return gatewayError(c, "get Gateway "+ns+"/"+wf.name, err)
	default:
		next := cur.DeepCopy()
		if next.Labels == nil {
			next.Labels = map[string]string{}
		}
		next.Labels[api.LabelWaypointFor] = wf.forType
		next.Spec.GatewayClassName = want.Spec.GatewayClassName
		next.Spec.Listeners = want.Spec.Listeners
		if _, err := gws.Update(ctx, next, metav1.UpdateOptions{}); err != nil {
			return gatewayError(c, "update Gateway "+ns+"/"+wf.name, err)
		}
		fmt.Fprintf(w, "waypoint %s/%s updated\n", ns, wf.name)
	}
	if wf.enroll {
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{api.LabelUseWaypoint: wf.name}}})
		if _, err := c.kube.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("label namespace %s %s=%s: %w", ns, api.LabelUseWaypoint, wf.name, err)
		}
		fmt.Fprintf(w, "namespace %s labelled %s=%s\n", ns, api.LabelUseWaypoint, wf.name)
	}
	if !wf.wait {
		return nil
	}
	deadline := time.Now().Add(wf.waitTimeout)
	for {
		gw, err := gws.Get(ctx, wf.name, metav1.GetOptions{})
		if err != nil {
			return gatewayError(c, "get Gateway "+ns+"/"+wf.name, err)
		}
		p := meta.FindStatusCondition(gw.Status.Conditions, string(gatewayv1.GatewayConditionProgrammed))
		if p != nil && p.Status == metav1.ConditionTrue && p.ObservedGeneration >= gw.Generation {
			fmt.Fprintf(w, "waypoint %s/%s programmed (%s)\n", ns, wf.name, addresses(gw))
			return nil
		}
		if time.Now().After(deadline) {
			why := "the controller has not written its status: is weft-controller running?"
			if p != nil {
				why = p.Reason + ": " + p.Message
			}
			if a := meta.FindStatusCondition(gw.Status.Conditions, string(gatewayv1.GatewayConditionAccepted)); a != nil && a.Status == metav1.ConditionFalse {
				why = a.Reason + ": " + a.Message
			}
			return fmt.Errorf("waypoint %s/%s not programmed after %s: %s", ns, wf.name, wf.waitTimeout, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func waypointDelete(ctx context.Context, c *clients, ns, name string, w io.Writer) error {
	err := c.gateway.GatewayV1().Gateways(ns).Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) && !crdMissing(err) {
		return fmt.Errorf("waypoint %s/%s not found; `weftctl waypoint list -A` lists the waypoints", ns, name)
	}
	if err != nil {
		return gatewayError(c, "delete Gateway "+ns+"/"+name, err)
	}
	fmt.Fprintf(w, "waypoint %s/%s deleted\n", ns, name)
	if n, err := c.kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil && n.Labels[api.LabelUseWaypoint] == name {
		fmt.Fprintf(w, "note: namespace %s is still labelled %s=%s: traffic to its services is refused until a waypoint %s exists again; to send it directly (without L7 policy), remove the label: kubectl label namespace %s %s-\n",
			ns, api.LabelUseWaypoint, name, name, ns, api.LabelUseWaypoint)
	}
	return nil
}

// waypointRow is one line of `waypoint list`.
type waypointRow struct {
	Name       string `json:"name"`
	Namespace  string `json:"namespace"`
	For        string `json:"for"`
	Programmed string `json:"programmed"`
	Address    string `json:"address"`
	Reason     string `json:"reason,omitempty"`
}

func waypointList(ctx context.Context, c *clients, ns string, asJSON bool, w io.Writer) error {
	list, err := c.gateway.GatewayV1().Gateways(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return gatewayError(c, "list Gateways", err)
	}
	rows := []waypointRow{}
	for _, gw := range list.Items {
		if string(gw.Spec.GatewayClassName) != api.WaypointGatewayClass {
			continue
		}
		r := waypointRow{Name: gw.Name, Namespace: gw.Namespace, For: api.WaypointForService, Programmed: "Unknown", Address: addresses(&gw)}
		if v, ok := gw.Labels[api.LabelWaypointFor]; ok {
			r.For = v
		}
		if a := meta.FindStatusCondition(gw.Status.Conditions, string(gatewayv1.GatewayConditionAccepted)); a != nil && a.Status == metav1.ConditionFalse {
			r.Programmed, r.Reason = "False", a.Reason+": "+a.Message
		} else if p := meta.FindStatusCondition(gw.Status.Conditions, string(gatewayv1.GatewayConditionProgrammed)); p != nil {
			r.Programmed = string(p.Status)
			if p.Status != metav1.ConditionTrue {
				r.Reason = p.Reason + ": " + p.Message
			}
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b waypointRow) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	if asJSON {
		return writeJSON(w, rows)
	}
	if len(rows) == 0 {
		where := "namespace " + ns
		if ns == "" {
			where = "the cluster"
		}
		fmt.Fprintf(w, "no waypoints in %s\n", where)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tNAMESPACE\tFOR\tPROGRAMMED\tADDRESS")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Namespace, r.For, r.Programmed, cmp.Or(r.Address, "-"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rows {
		if r.Reason != "" {
			fmt.Fprintf(w, "%s/%s: %s\n", r.Namespace, r.Name, r.Reason)
		}
	}
	return nil
}

func addresses(gw *gatewayv1.Gateway) string {
	var out []string
	for _, a := range gw.Status.Addresses {
		out = append(out, a.Value)
	}
	return strings.Join(out, ",")
}

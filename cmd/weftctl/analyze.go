package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/envoy"
	"github.com/weftmesh/weft/controller/translate"
	"github.com/weftmesh/weft/controller/waypointcfg"
)

// Severities of a finding. An error means traffic is refused, or a policy or rule is not
// applied at all; a warning that something works differently from what the object says.
const (
	severityError   = "Error"
	severityWarning = "Warning"
)

// annotationDryRun is Istio's dry-run annotation of AuthorizationPolicies.
const annotationDryRun = "istio.io/dry-run"

// finding is one problem of the mesh configuration.
type finding struct {
	Severity  string `json:"severity"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Field is the path of the field at fault in the object, when it is known.
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

func (f finding) object() string {
	if f.Kind == "-" {
		return "-"
	}
	if f.Namespace == "" {
		return f.Kind + " " + f.Name
	}
	return f.Kind + " " + f.Namespace + "/" + f.Name
}

func (f finding) text() string {
	if f.Fix == "" {
		return f.Message
	}
	return f.Message + " (fix: " + f.Fix + ")"
}

// analysis is the answer of `weftctl analyze`.
type analysis struct {
	// Namespace is the namespace analyzed; empty means every namespace.
	Namespace string    `json:"namespace,omitempty"`
	Findings  []finding `json:"findings"`
	Errors    int       `json:"errors"`
	Warnings  int       `json:"warnings"`
	Notes     []string  `json:"notes,omitempty"`
}

// analyzeInput is the cluster as the controller sees it, plus the routing objects of every
// namespace and the Deployments of the waypoints.
type analyzeInput struct {
	translate.Input
	VirtualServices  []*networkingv1.VirtualService
	DestinationRules []*networkingv1.DestinationRule
	ServiceEntries   []*networkingv1.ServiceEntry
	HTTPRoutes       []*gatewayv1.HTTPRoute
	// Deployments of the waypoint Gateways by translate.WaypointKey; absent when it does not
	// exist.
	Deployments map[string]*appsv1.Deployment
}

// errFindings is returned when the analysis found errors: weftctl exits with status 1.
type errFindings struct{ errors, warnings int }

func (e errFindings) Error() string {
	return fmt.Sprintf("analyze found %s and %s", plural(e.errors, "error"), plural(e.warnings, "warning"))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// newAnalyzeCommand returns `weftctl analyze`.
func newAnalyzeCommand(connect connectFunc, f *flags) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "analyze",
		Short: "Explain what is wrong with the mesh configuration of a namespace (-A: of every namespace), with the field and the fix",
		Long: `Explain what is wrong with the mesh configuration, computed with the controller's own
translation of the cluster's objects: the configuration problems the controller logs
(e.g. istio.io/use-waypoint naming a waypoint that does not exist), waypoints without a
ready pod and the Services and pods whose traffic is refused because of it,
AuthorizationPolicies that are not enforced or only in part (their ZtunnelAccepted or
WaypointAccepted condition), the parts of VirtualServices, DestinationRules, HTTPRoutes and
ServiceEntries a waypoint cannot apply, and routing rules in namespaces that no waypoint
serves. One line per finding; the exit status is 1 when there is an error (warnings alone: 0).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.output != "table" && f.output != "json" {
				return fmt.Errorf("-o %s: the output format is table or json", f.output)
			}
			c, err := connect(f)
			if err != nil {
				return err
			}
			ns := cmp.Or(f.namespace, c.namespace, "default")
			if all {
				ns = ""
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 6*f.timeout)
			defer cancel()
			in, notes, err := loadAnalyzeInput(ctx, c)
			if err != nil {
				return err
			}
			a := analyze(in, translate.Options{TrustDomain: f.trustDomain, RootNamespace: f.rootNamespace}, ns)
			a.Notes = append(a.Notes, notes...)
			w := cmd.OutOrStdout()
			if f.output == "json" {
				err = writeJSON(w, a)
			} else {
				err = writeAnalysis(w, a)
			}
			if err != nil {
				return err
			}
			if a.Errors > 0 {
				return errFindings{a.Errors, a.Warnings}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "analyze every namespace")
	return cmd
}

// loadAnalyzeInput reads what the controller watches, the routing objects and the waypoints'
// Deployments. Routing kinds whose CRDs are not installed count as none, with a note.
func loadAnalyzeInput(ctx context.Context, c *clients) (analyzeInput, []string, error) {
	var in analyzeInput
	var err error
	var notes []string
	if in.Input, notes, err = load(ctx, c); err != nil {
		return in, nil, err
	}
	const absent = "%s (%s) is not installed in the cluster: treated as none"
	opts := metav1.ListOptions{}
	vss, err := c.istio.NetworkingV1().VirtualServices("").List(ctx, opts)
	switch {
	case apierrors.IsNotFound(err):
		notes = append(notes, fmt.Sprintf(absent, "VirtualService", "networking.istio.io/v1"))
	case err != nil:
		return in, nil, listError(c, "virtualservices.networking.istio.io", err)
	default:
		in.VirtualServices = vss.Items
	}
	drs, err := c.istio.NetworkingV1().DestinationRules("").List(ctx, opts)
	switch {
	case apierrors.IsNotFound(err):
		notes = append(notes, fmt.Sprintf(absent, "DestinationRule", "networking.istio.io/v1"))
	case err != nil:
		return in, nil, listError(c, "destinationrules.networking.istio.io", err)
	default:
		in.DestinationRules = drs.Items
	}
	ses, err := c.istio.NetworkingV1().ServiceEntries("").List(ctx, opts)
	switch {
	case apierrors.IsNotFound(err):
		notes = append(notes, fmt.Sprintf(absent, "ServiceEntry", "networking.istio.io/v1"))
	case err != nil:
		return in, nil, listError(c, "serviceentries.networking.istio.io", err)
	default:
		in.ServiceEntries = ses.Items
	}
	if c.gateway != nil {
		hrs, err := c.gateway.GatewayV1().HTTPRoutes("").List(ctx, opts)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return in, nil, listError(c, "httproutes.gateway.networking.k8s.io", err)
		default:
			for i := range hrs.Items {
				in.HTTPRoutes = append(in.HTTPRoutes, &hrs.Items[i])
			}
		}
	}
	in.Deployments = map[string]*appsv1.Deployment{}
	for _, gw := range in.Gateways {
		if !translate.IsWaypoint(gw) {
			continue
		}
		dep, err := c.kube.AppsV1().Deployments(gw.Namespace).Get(ctx, gw.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return in, nil, listError(c, "deployments.apps", err)
		default:
			in.Deployments[translate.WaypointKey(gw.Namespace, gw.Name)] = dep
		}
	}
	return in, notes, nil
}

// analyze computes the findings about the objects of namespace ns ("" for every namespace),
// sorted: errors first, then by namespace, kind, name, field and message.
func analyze(in analyzeInput, o translate.Options, ns string) analysis {
	a := &analyzer{in: in, o: o, ns: ns, m: translate.Build(in.Input, o)}
	a.translateWarnings()
	configs := a.waypointConfigs()
	a.waypoints()
	a.policies(configs)
	a.routes(configs)
	a.unserved()

	out := analysis{Namespace: ns, Findings: a.findings}
	slices.SortFunc(out.Findings, func(x, y finding) int {
		return cmp.Or(
			strings.Compare(x.Severity, y.Severity), // Error < Warning
			strings.Compare(x.Namespace, y.Namespace), strings.Compare(x.Kind, y.Kind), strings.Compare(x.Name, y.Name),
			strings.Compare(x.Field, y.Field), strings.Compare(x.Message, y.Message), strings.Compare(x.Fix, y.Fix))
	})
	out.Findings = slices.Compact(out.Findings)
	if out.Findings == nil {
		out.Findings = []finding{}
	}
	for _, f := range out.Findings {
		if f.Severity == severityError {
			out.Errors++
		} else {
			out.Warnings++
		}
	}
	return out
}

type analyzer struct {
	in       analyzeInput
	o        translate.Options
	ns       string
	m        *translate.Mesh
	findings []finding
}

// selected reports whether objects of namespace ns are analyzed.
func (a *analyzer) selected(ns string) bool { return a.ns == "" || a.ns == ns }

func (a *analyzer) add(f finding) {
	if a.selected(f.Namespace) {
		a.findings = append(a.findings, f)
	}
}

// warningRE splits a translate warning "<Kind> <namespace>/<name>: <message>".
var warningRE = regexp.MustCompile(`^(AuthorizationPolicy|Service|Pod|pod|waypoint Gateway) ([^/ ]+)/([^: ]+): (.*)$`)

// fieldRE finds the label or annotation a translate warning is about.
var fieldRE = regexp.MustCompile(`^(label|annotation) ([^=: ]+)`)

// translateWarnings reports the problems translate.Build found (the controller logs them as
// "configuration problem"). Those of AuthorizationPolicies are reported from their conditions
// (policies). A use-waypoint label naming a waypoint that is missing or invalid is an error:
// traffic to the object is refused.
func (a *analyzer) translateWarnings() {
	for _, w := range a.m.Warnings {
		msg := w.Error()
		f := finding{Severity: severityWarning, Kind: "-", Name: "-", Message: msg}
		if p := warningRE.FindStringSubmatch(msg); p != nil {
			if p[1] == "AuthorizationPolicy" {
				continue
			}
			f.Kind, f.Namespace, f.Name, f.Message = p[1], p[2], p[3], p[4]
			switch f.Kind {
			case "pod":
				f.Kind = "Pod"
			case "waypoint Gateway":
				f.Kind = "Gateway"
			}
			if q := fieldRE.FindStringSubmatch(f.Message); q != nil {
				f.Field = "metadata." + q[1] + "s[" + q[2] + "]"
			}
		} else if a.ns != "" {
			continue // names no object: shown with -A only
		}
		if strings.Contains(msg, "traffic to it is refused") {
			f.Severity = severityError
			if a.fallbackDirect(f.Kind, f.Namespace, f.Name) {
				f.Severity = severityWarning
				head, _, _ := strings.Cut(f.Message, ": traffic to it is refused")
				f.Message = head + fmt.Sprintf(": its traffic bypasses the waypoint, without L7 policy (%s=%s)", api.LabelWaypointFallback, api.WaypointFallbackDirect)
				f.Fix = fmt.Sprintf("deploy the waypoint (weftctl waypoint apply -n %s), or remove the label that names it", f.Namespace)
			}
		}
		a.add(f)
	}
}

// fallbackDirect reports whether the translated Service or Pod kind namespace/name falls back to
// direct delivery when its waypoint is missing (weft.dev/waypoint-fallback=direct).
func (a *analyzer) fallbackDirect(kind, namespace, name string) bool {
	for _, r := range a.m.Resources {
		switch {
		case kind == "Service" && r.Address.GetService().GetNamespace() == namespace && r.Address.GetService().GetName() == name:
			return r.Address.GetService().GetWaypoint().GetFallbackDirect()
		case kind == "Pod" && r.Address.GetWorkload().GetNamespace() == namespace && r.Address.GetWorkload().GetName() == name:
			return r.Address.GetWorkload().GetWaypoint().GetFallbackDirect()
		}
	}
	return false
}

// waypointConfig is the translation of one waypoint, as the controller serves it.
type waypointConfig struct {
	wp  *translate.Waypoint
	cfg *waypointcfg.Config
}

// waypointConfigs translates every waypoint as the controller does (controller/app): the
// objects of its namespace, the Services bound to it and every AuthorizationPolicy.
func (a *analyzer) waypointConfigs() []waypointConfig {
	nsLabels := map[string]map[string]string{}
	for _, n := range a.in.Namespaces {
		nsLabels[n.Name] = n.Labels
	}
	var out []waypointConfig
	for _, key := range slices.Sorted(maps.Keys(a.m.Waypoints)) {
		wp := a.m.Waypoints[key]
		cfg := waypointcfg.ForWaypoint(wp, a.envoyInput(wp.Namespace), nsLabels[wp.Namespace], a.in.AuthorizationPolicies, a.o)
		out = append(out, waypointConfig{wp: wp, cfg: cfg})
	}
	return out
}

// envoyInput returns the objects of namespace ns a waypoint there is configured from (what
// controller/cluster.EnvoyInput reads).
func (a *analyzer) envoyInput(ns string) envoy.Input {
	in := envoy.Input{Namespace: ns}
	in.Services = inNamespace(a.in.Services, ns)
	in.EndpointSlices = inNamespace(a.in.EndpointSlices, ns)
	in.Pods = inNamespace(a.in.Pods, ns)
	in.VirtualServices = inNamespace(a.in.VirtualServices, ns)
	in.DestinationRules = inNamespace(a.in.DestinationRules, ns)
	in.ServiceEntries = inNamespace(a.in.ServiceEntries, ns)
	in.HTTPRoutes = inNamespace(a.in.HTTPRoutes, ns)
	return in
}

func inNamespace[T interface{ GetNamespace() string }](objs []T, ns string) []T {
	var out []T
	for _, o := range objs {
		if o.GetNamespace() == ns {
			out = append(out, o)
		}
	}
	return out
}

// waypoints reports Gateways of class istio-waypoint that are not deployed or have no ready
// pod, with the Services and pods whose traffic is refused because of it, and those whose
// Programmed condition the controller has not set although their pods are ready.
func (a *analyzer) waypoints() {
	for _, gw := range a.in.Gateways {
		if !translate.IsWaypointClass(gw) {
			continue
		}
		key := translate.WaypointKey(gw.Namespace, gw.Name)
		base := finding{Kind: "Gateway", Namespace: gw.Namespace, Name: gw.Name}
		if !translate.ValidWaypointListeners(gw) {
			f := base
			f.Severity, f.Field = severityError, "spec.listeners"
			f.Message = "the waypoint is not deployed: " + translate.ErrWaypointListeners + "; traffic of the Services and pods that name it (istio.io/use-waypoint) is refused"
			f.Fix = fmt.Sprintf("give it exactly one listener {name: mesh, port: 15008, protocol: HBONE}, e.g. weftctl waypoint apply -n %s --name %s", gw.Namespace, gw.Name)
			a.add(f)
			continue
		}
		wp := a.m.Waypoints[key]
		if wp == nil {
			continue
		}
		refused, bypass, touches := a.bound(wp)
		if !a.selected(gw.Namespace) && !touches {
			continue
		}
		add := func(f finding) { a.findings = append(a.findings, f) } // in scope through its bindings
		programmed := meta.FindStatusCondition(gw.Status.Conditions, string(gatewayv1.GatewayConditionProgrammed))
		dep := a.in.Deployments[key]
		var why string
		switch {
		case dep == nil:
			why = fmt.Sprintf("Deployment %s does not exist", key)
		case dep.Status.ReadyReplicas < 1:
			want := int32(1)
			if dep.Spec.Replicas != nil {
				want = *dep.Spec.Replicas
			}
			why = fmt.Sprintf("Deployment %s has no ready replica (0 of %d ready)", key, want)
		case !hasClusterIP(a.service(gw.Namespace, gw.Name)):
			why = fmt.Sprintf("Service %s has no cluster IP", key)
		}
		if why == "" {
			if programmed == nil || programmed.Status != metav1.ConditionTrue || programmed.ObservedGeneration < gw.Generation {
				f := base
				f.Severity, f.Field = severityWarning, "status.conditions[Programmed]"
				f.Message = "the waypoint has a ready pod but the controller has not marked the Gateway Programmed"
				if programmed != nil && programmed.Status != metav1.ConditionTrue {
					f.Message += " (" + programmed.Reason + ": " + programmed.Message + ")"
				}
				f.Fix = "check that weft-controller is running: kubectl -n weft-system get pods, and its log"
				add(f)
			}
			continue
		}
		f := base
		f.Field = "status.conditions[Programmed]"
		f.Message = "the waypoint has no ready pod: " + why
		if programmed != nil && programmed.Status != metav1.ConditionTrue && programmed.Message != "" {
			f.Message += " (the controller says: " + programmed.Reason + ": " + programmed.Message + ")"
		}
		switch {
		case len(refused) > 0:
			f.Severity = severityError
			f.Message += "; traffic to these is refused now: " + strings.Join(refused, ", ")
		case len(bypass) > 0:
			f.Severity = severityWarning
		default:
			f.Severity = severityWarning
			f.Message += "; nothing is bound to it yet"
		}
		if len(bypass) > 0 {
			f.Message += fmt.Sprintf("; these bypass it without L7 policy (%s=%s): %s", api.LabelWaypointFallback, api.WaypointFallbackDirect, strings.Join(bypass, ", "))
		}
		f.Fix = fmt.Sprintf("kubectl -n %s describe deployment %s (and its pods); if it does not exist, check that weft-controller is running", gw.Namespace, gw.Name)
		add(f)
	}
}

// bound returns the Services and pods bound to wp whose traffic a missing waypoint refuses,
// those that fall back to direct delivery, and whether any is in a selected namespace.
func (a *analyzer) bound(wp *translate.Waypoint) (refused, bypass []string, touches bool) {
	domain := cmp.Or(a.o.ClusterDomain, "cluster.local")
	for _, key := range wp.Services {
		ns, name, _ := strings.Cut(key, "/")
		touches = touches || a.selected(ns)
		r := a.m.Resources[translate.ServiceName(ns, name+"."+ns+".svc."+domain)]
		if r.Address.GetService().GetWaypoint().GetFallbackDirect() {
			bypass = append(bypass, "Service "+key)
		} else {
			refused = append(refused, "Service "+key)
		}
	}
	for _, uid := range wp.Workloads {
		w := a.m.Resources[uid].Address.GetWorkload()
		if w == nil {
			continue
		}
		touches = touches || a.selected(w.Namespace)
		what := "Pod " + w.Namespace + "/" + w.Name
		if w.GetWaypoint().GetFallbackDirect() {
			bypass = append(bypass, what)
		} else {
			refused = append(refused, what)
		}
	}
	return refused, bypass, touches
}

func (a *analyzer) service(ns, name string) *corev1.Service {
	for _, s := range a.in.Services {
		if s.Namespace == ns && s.Name == name {
			return s
		}
	}
	return nil
}

func hasClusterIP(svc *corev1.Service) bool {
	if svc == nil {
		return false
	}
	_, err := netip.ParseAddr(svc.Spec.ClusterIP)
	return err == nil
}

// policies reports AuthorizationPolicies that are not enforced (condition False: an error,
// except a dry-run policy) or only in part (True with reason PartiallyInvalid or
// UnsupportedValue: a warning). A policy attached to waypoints is judged by the waypoints'
// translation (controller/rbac), as the controller writes its status; others by translate's.
func (a *analyzer) policies(configs []waypointConfig) {
	type verdict struct {
		cond      translate.PolicyCondition
		waypoints []string
	}
	atWaypoints := map[string][]*verdict{}
	for _, c := range configs {
		for pk, cond := range c.cfg.PolicyStatus {
			wk := translate.WaypointKey(c.wp.Namespace, c.wp.Name)
			i := slices.IndexFunc(atWaypoints[pk], func(v *verdict) bool {
				return v.cond.Reason == cond.Reason && v.cond.Message == cond.Message && v.cond.Status == cond.Status
			})
			if i < 0 {
				atWaypoints[pk] = append(atWaypoints[pk], &verdict{cond: cond})
				i = len(atWaypoints[pk]) - 1
			}
			atWaypoints[pk][i].waypoints = append(atWaypoints[pk][i].waypoints, wk)
		}
	}
	for _, ap := range a.in.AuthorizationPolicies {
		if !a.selected(ap.Namespace) {
			continue
		}
		pk := translate.PolicyKey(ap.Namespace, ap.Name)
		vs := atWaypoints[pk]
		if len(vs) == 0 {
			if c, ok := a.m.PolicyStatus[pk]; ok {
				vs = []*verdict{{cond: c}}
			}
		}
		for _, v := range vs {
			c := v.cond
			if c.Status && c.Reason == translate.ReasonAccepted {
				continue
			}
			f := finding{Kind: "AuthorizationPolicy", Namespace: ap.Namespace, Name: ap.Name,
				Field:   "status.conditions[" + c.Type + "]",
				Message: fmt.Sprintf("%s=%s (%s): %s", c.Type, conditionStatus(c.Status), c.Reason, c.Message)}
			if len(v.waypoints) > 0 {
				f.Message = "at waypoint " + strings.Join(v.waypoints, ", ") + ": " + f.Message
			}
			switch {
			case c.Status:
				f.Severity = severityWarning // enforced without some parts
			case ap.Annotations[annotationDryRun] == "true":
				f.Severity = severityWarning // not enforced, as asked
			default:
				f.Severity = severityError
			}
			a.add(f)
		}
	}
}

func conditionStatus(ok bool) string {
	if ok {
		return "True"
	}
	return "False"
}

// routes reports what the waypoints cannot translate of the VirtualServices,
// DestinationRules, HTTPRoutes and ServiceEntries of their namespaces (envoy.Problem). A
// listener left out (the waypoint serves nothing) is an error of its Gateway.
func (a *analyzer) routes(configs []waypointConfig) {
	for _, c := range configs {
		for _, p := range c.cfg.Problems {
			f := finding{Severity: severityWarning, Kind: p.Kind, Namespace: p.Namespace, Name: p.Name, Field: p.Field, Message: p.Message, Fix: p.Fix}
			if p.Kind == "Listener" {
				f = finding{Severity: severityError, Kind: "Gateway", Namespace: c.wp.Namespace, Name: c.wp.Name, Field: "Listener " + p.Name + " " + p.Field, Message: p.Message, Fix: p.Fix}
			}
			a.add(f)
		}
	}
}

// unserved reports VirtualServices (for the mesh), DestinationRules and HTTPRoutes of
// Services in namespaces that no waypoint serves: nothing applies them.
func (a *analyzer) unserved() {
	served := map[string]bool{}
	for _, wp := range a.m.Waypoints {
		served[wp.Namespace] = true
	}
	report := func(kind string, m metav1.ObjectMeta) {
		if served[m.Namespace] {
			return
		}
		a.add(finding{Severity: severityWarning, Kind: kind, Namespace: m.Namespace, Name: m.Name,
			Message: "not applied: no waypoint serves " + m.Namespace,
			Fix:     fmt.Sprintf("deploy one (weftctl waypoint apply -n %s --enroll-namespace)", m.Namespace)})
	}
	for _, vs := range a.in.VirtualServices {
		if len(vs.Spec.Gateways) == 0 || slices.Contains(vs.Spec.Gateways, "mesh") {
			report("VirtualService", vs.ObjectMeta)
		}
	}
	for _, dr := range a.in.DestinationRules {
		report("DestinationRule", dr.ObjectMeta)
	}
	for _, hr := range a.in.HTTPRoutes {
		if slices.ContainsFunc(hr.Spec.ParentRefs, isServiceParent) {
			report("HTTPRoute", hr.ObjectMeta)
		}
	}
}

// isServiceParent reports whether p is a Service (GAMMA: the route is for the mesh).
func isServiceParent(p gatewayv1.ParentReference) bool {
	return p.Kind != nil && *p.Kind == "Service" && (p.Group == nil || *p.Group == "" || *p.Group == "core")
}

// writeAnalysis prints a as a table, one line per finding.
func writeAnalysis(w io.Writer, a analysis) error {
	where := "namespace " + a.Namespace
	if a.Namespace == "" {
		where = "the cluster"
	}
	if len(a.Findings) == 0 {
		fmt.Fprintf(w, "No problems found in %s.\n", where)
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEVERITY\tOBJECT\tFIELD\tMESSAGE")
		for _, f := range a.Findings {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Severity, f.object(), cmp.Or(f.Field, "-"), f.text())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(w, "%s, %s in %s.\n", plural(a.Errors, "error"), plural(a.Warnings, "warning"), where)
	}
	for _, n := range a.Notes {
		fmt.Fprintln(w, "note: "+n)
	}
	return nil
}

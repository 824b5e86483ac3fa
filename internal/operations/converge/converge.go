// Package converge is `dhctl converge`: it brings a running cluster to its configuration. The
// truth is read from the cluster (its NodeGroups and Nodes); the desired state is the NodeGroups
// of --config when given, else the cluster's own NodeGroups (edited with kubectl). The plan is
// always made and shown first, per node group and per node; --check stops there and says by its
// exit code whether anything would change. Otherwise, under the converge lock, the NodeGroups
// of --config are applied, every node is given its group's nodeTemplate (labels, annotations,
// taints: nodegroup.Sync never touches what others set) and each NodeGroup's status is written.
// Every step is idempotent: interrupted anywhere, a re-run plans what is left and does it.
package converge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/exitcode"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/nodegroup"
)

// Options are what a converge needs.
type Options struct {
	Name string // the cluster's name, for messages
	// Kube opens the API server.
	Kube func(ctx context.Context) (*kube.Client, error)
	// Groups are the NodeGroup objects the configuration wants (install's NodeGroupObjects of
	// --config); nil: the cluster's NodeGroups are the desired state.
	Groups []*unstructured.Unstructured
	// Check only plans: an error marked exitcode.Drifted when anything would change.
	Check bool
	// JSON prints the plan as one JSON document instead of lines for people.
	JSON bool
	// Static machines, from the configuration: StaticInstances (nil: those the cluster holds;
	// none there either, and no Static group gains or loses nodes) and the SSHCredentials they
	// name; StaticObjects are the same as objects, kept in the cluster by the converge.
	Instances     []nodegroup.StaticInstance
	Credentials   map[string]nodegroup.SSHCredentials
	StaticObjects []*unstructured.Unstructured
	// Machines is what adding and removing nodes needs (static machines and cloud ones); nil
	// when this run cannot (MachinesUnavailable says why, and a plan that needs it fails before
	// any change).
	Machines            *MachineOptions
	MachinesUnavailable string
	// Config is the configuration --config gives: kept in the cluster by the converge (refused
	// when it changes what the cluster was made with), so that a converge without --config
	// plans from it. nil: the cluster's own is the configuration.
	Config *config.Cluster
	// Cloud is what a cloud cluster's infrastructure needs; nil for a static cluster.
	Cloud *CloudOptions
	// FirstMasterIP is the first master's address (the state dir's join data): never removed.
	FirstMasterIP string
	// Destructive changes (removing a node) need AllowDestructive or a nil error from Confirm,
	// which is shown them; with neither, converge prints the plan and refuses.
	AllowDestructive bool
	Confirm          func(what []string) error
	// Holder names the lock's holder ("" = kube.Holder()); LeaseDuration is the lock's lease.
	Holder        string
	LeaseDuration time.Duration
	Out           io.Writer
	Log           *slog.Logger
}

// Plan is what a converge does, made before anything changes.
type Plan struct {
	Cluster    string        `json:"cluster"`
	NodeGroups []GroupAction `json:"nodeGroups"`
	Nodes      []NodeAction  `json:"nodes"`
	// Infrastructure is a cloud cluster's steps (the base infrastructure, each machine).
	Infrastructure []InfraAction `json:"infrastructure,omitempty"`
	// Warnings are things the plan cannot act on (a node of no group, a group with no NodeGroup).
	Warnings []string `json:"warnings,omitempty"`
}

// Actions of a plan.
const (
	ActionNone   = "none"
	ActionCreate = "create"
	ActionUpdate = "update"
	ActionDelete = "delete"
	// ActionReplace is a cloud node whose machine is made again (a destructive infrastructure
	// change): removed as a deleted node is, then joined as a new one.
	ActionReplace = "replace"
)

// GroupAction is what happens to a NodeGroup object.
type GroupAction struct {
	Name   string           `json:"name"`
	Action string           `json:"action"`
	Fields []string         `json:"fields,omitempty"` // spec fields that change
	Status nodegroup.Status `json:"status"`           // as the cluster is now
}

// NodeAction is what happens to a node.
type NodeAction struct {
	Node    string             `json:"node"` // a node to create: its StaticInstance's name
	Group   string             `json:"group"`
	Action  string             `json:"action"`
	Ready   bool               `json:"ready"`
	Changes []nodegroup.Change `json:"changes,omitempty"`
	// Address and Instance or Machine: a node created, replaced or deleted, the machine it is on
	// (a StaticInstance, or a cloud machine: its infrastructure step).
	Address     string `json:"address,omitempty"`
	Instance    string `json:"staticInstance,omitempty"`
	Machine     string `json:"machine,omitempty"`
	Destructive bool   `json:"destructive,omitempty"`
	// Exists says whether the node is in the cluster (a cloud machine made by a run that was
	// interrupted before its join has none).
	Exists bool `json:"exists"`
	// Rejoin: a master whose join was interrupted before etcd (no member): replaced by being
	// cleaned and joined again on the same machine.
	Rejoin bool `json:"rejoin,omitempty"`
	// Lost: the node's kubelet no longer reports (its machine is off, gone or cut off).
	Lost bool `json:"lost,omitempty"`

	instance nodegroup.StaticInstance
	ssh      string       // how a cloud machine is reached (its address when empty)
	infra    *InfraAction // a cloud machine's step
}

// on names the machine a node is on, for people.
func (n NodeAction) on() string {
	if n.Machine != "" {
		return "machine " + n.Machine
	}
	return "StaticInstance " + n.Instance
}

// Destructive lists the plan's destructive changes, for people.
func (p Plan) Destructive() []string {
	var out []string
	described := map[string]bool{}
	for _, n := range p.Nodes {
		if !n.Destructive {
			continue
		}
		what := "drained, removed from the cluster, and the machine cleaned (kubeadm reset, kubelet, containerd, CNI, /etc/kubernetes)"
		switch {
		case n.Rejoin:
			what = "has no etcd member (its join was interrupted): cleaned, removed from the cluster and joined again on the same machine"
		case n.Machine != "" && n.Action == ActionReplace:
			what = "drained, removed from the cluster, its machine cleaned, then made again from the new settings (what is on it is lost: " + destructiveChanges(n.infra) + ") and joined again"
		case n.Machine != "":
			what += ", then the machine destroyed"
		}
		if !n.Exists {
			what = "no node (an interrupted run removed it or never joined it): " + what
		}
		if n.Group == config.MasterNodeGroup && !n.Rejoin {
			what = "control-plane node: leaves etcd (only while every member is healthy), then " + what
		}
		where := n.Address
		if n.Machine == "" {
			where += ", " + n.on()
		}
		out = append(out, fmt.Sprintf("node %s (%s): %s", n.Node, where, what))
		described[n.Machine] = n.Machine != ""
	}
	for _, a := range p.Infrastructure {
		if described[a.Step] {
			continue
		}
		switch a.Status {
		case InfraDestructive:
			out = append(out, fmt.Sprintf("infrastructure %s: %s (what is on it is lost)", a.Step, destructiveChanges(&a)))
		case InfraDelete:
			out = append(out, fmt.Sprintf("infrastructure %s: the machine is destroyed", a.Step))
		}
	}
	return out
}

// destructiveChanges lists a step's changes that lose data.
func destructiveChanges(a *InfraAction) string {
	var lost []string
	if a != nil {
		for _, c := range a.Changes {
			if c.Destructive {
				lost = append(lost, fmt.Sprintf("%s %s", c.Action, c.Address))
			}
		}
	}
	return strings.Join(lost, ", ")
}

// InSync reports whether the plan changes nothing.
func (p Plan) InSync() bool {
	for _, g := range p.NodeGroups {
		if g.Action != ActionNone {
			return false
		}
	}
	for _, n := range p.Nodes {
		if n.Action != ActionNone {
			return false
		}
	}
	for _, a := range p.Infrastructure {
		if a.Status != InfraInSync {
			return false
		}
	}
	return true
}

// counts says how many node groups and nodes have each action.
func (p Plan) counts() string {
	groups, nodes := map[string]int{}, map[string]int{}
	for _, g := range p.NodeGroups {
		groups[g.Action]++
	}
	for _, n := range p.Nodes {
		nodes[n.Action]++
	}
	s := fmt.Sprintf("node groups: %d to create, %d to update, %d in sync; nodes: %d to create, %d to update, %d to replace, %d to delete, %d in sync",
		groups[ActionCreate], groups[ActionUpdate], groups[ActionNone], nodes[ActionCreate], nodes[ActionUpdate], nodes[ActionReplace], nodes[ActionDelete], nodes[ActionNone])
	if len(p.Infrastructure) > 0 {
		steps := map[string]int{}
		for _, a := range p.Infrastructure {
			steps[a.Status]++
		}
		s += fmt.Sprintf("; infrastructure: %d InSync, %d OutOfSync, %d DestructiveOutOfSync, %d to create, %d to delete",
			steps[InfraInSync], steps[InfraOutOfSync], steps[InfraDestructive], steps[InfraCreate], steps[InfraDelete])
	}
	return s
}

// WriteText prints the plan for people.
func (p Plan) WriteText(w io.Writer) {
	fmt.Fprintf(w, "converge plan for cluster %s:\n", p.Cluster)
	for _, g := range p.NodeGroups {
		line := fmt.Sprintf("  NodeGroup %s: %s", g.Name, actionWord(g.Action))
		if len(g.Fields) > 0 {
			line += " (" + strings.Join(g.Fields, ", ") + ")"
		}
		fmt.Fprintln(w, line)
	}
	for _, n := range p.Nodes {
		group := n.Group
		if group == "" {
			group = "no group"
		}
		line := fmt.Sprintf("  node %s (%s): %s", n.Node, group, actionWord(n.Action))
		switch {
		case n.Action == ActionCreate && n.Machine != "" && n.Exists:
			line = fmt.Sprintf("  node %s (group %s): create (the machine is made; the node exists)", n.Node, n.Group)
		case n.Action == ActionCreate && n.Machine != "":
			line = fmt.Sprintf("  node %s (group %s): create (its machine made if it is not, then joined)", n.Node, n.Group)
		case n.Action == ActionCreate:
			line = fmt.Sprintf("  node on StaticInstance %s (%s, group %s): create (join)", n.Instance, n.Address, n.Group)
		case n.Rejoin:
			line += fmt.Sprintf(" (DESTRUCTIVE: master without an etcd member, its join interrupted: %s, %s, is cleaned and joined again)", n.on(), n.Address)
		case n.Action == ActionReplace:
			line += fmt.Sprintf(" (DESTRUCTIVE: machine %s, %s, is made again from its group's new settings)", n.Machine, n.Address)
		case n.Action == ActionDelete && n.Machine != "":
			line += fmt.Sprintf(" (DESTRUCTIVE: machine %s, %s, is no longer in its group's replicas)", n.Machine, n.Address)
		case n.Action == ActionDelete:
			line += fmt.Sprintf(" (DESTRUCTIVE: StaticInstance %s, %s, is no longer selected by its group)", n.Instance, n.Address)
		}
		if len(n.Changes) > 0 {
			line += ": " + nodegroup.Summary(n.Changes)
		}
		fmt.Fprintln(w, line)
	}
	writeInfra(p, w)
	for _, warn := range p.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warn)
	}
	fmt.Fprintf(w, "%s\n", p.counts())
	if d := p.Destructive(); len(d) > 0 {
		fmt.Fprintf(w, "destructive changes (%d):\n", len(d))
		for _, line := range d {
			fmt.Fprintf(w, "  - %s\n", line)
		}
	}
}

func actionWord(a string) string {
	if a == ActionNone {
		return "in sync"
	}
	return a
}

// DriftError is what --check returns when the cluster differs from its configuration.
type DriftError struct{ Summary string }

func (e *DriftError) Error() string {
	return "the cluster differs from its configuration (" + e.Summary + "): run dhctl converge to apply the plan above"
}

// Run plans, shows the plan and, unless Check, carries it out. It returns the plan it made.
func Run(ctx context.Context, o Options) (Plan, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Holder == "" {
		o.Holder = kube.Holder()
	}
	k, err := o.Kube(ctx)
	if err != nil {
		return Plan{}, fmt.Errorf("reaching the API server: %w", err)
	}
	defer k.Close()

	// The lock before the plan: what is planned is what is done, nobody changing it between.
	var lock *kube.Lock
	if !o.Check {
		if lock, err = kube.AcquireLock(ctx, k.Typed(), o.Holder+" (converge)", o.LeaseDuration); err != nil {
			return Plan{}, err
		}
		defer func() {
			if err := lock.Release(context.WithoutCancel(ctx)); err != nil {
				o.Log.Warn("releasing the converge lock", "error", err)
			}
		}()
	}

	if o.Instances == nil {
		if o.Instances, o.Credentials, err = nodegroup.ReadStaticMachines(ctx, k.Dynamic()); err != nil {
			return Plan{}, err
		}
		if len(o.Instances) == 0 {
			o.Instances = nil
		}
	}
	desired, plan, err := makePlan(ctx, o, k)
	if err != nil {
		return Plan{}, err
	}
	if o.JSON {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(plan); err != nil {
			return plan, err
		}
	} else {
		plan.WriteText(o.Out)
	}
	if o.Check {
		if plan.InSync() {
			return plan, nil
		}
		return plan, exitcode.Drifted(&DriftError{Summary: plan.counts()})
	}
	if needsMachines(plan) && o.Machines == nil {
		return plan, exitcode.Usage(fmt.Errorf("the plan adds, replaces or removes nodes, which this run cannot do: %s", o.MachinesUnavailable))
	}
	var stored *storedConfig
	if o.Config != nil {
		if stored, err = checkStoredConfig(ctx, o, k); err != nil {
			return plan, err
		}
	}
	if d := plan.Destructive(); len(d) > 0 && !o.AllowDestructive {
		if o.Confirm == nil {
			return plan, exitcode.Usage(fmt.Errorf("the plan has %d destructive change(s) (above) and nothing changed: confirm them on a terminal, or pass --yes-i-am-sane-and-i-understand-what-i-am-doing", len(d)))
		}
		if err := o.Confirm(d); err != nil {
			return plan, err
		}
	}
	return plan, apply(ctx, o, k, lock, stored, desired, plan)
}

// makePlan reads the cluster and compares it with the desired NodeGroups.
func makePlan(ctx context.Context, o Options, k *kube.Client) (map[string]config.NodeGroup, Plan, error) {
	plan := Plan{Cluster: o.Name}
	live, err := nodegroup.ReadGroups(ctx, k.Dynamic())
	if err != nil {
		return nil, plan, err
	}
	desired := make(map[string]config.NodeGroup, len(live))
	for name, g := range live {
		desired[name] = g
	}
	actions := map[string]GroupAction{}
	for name := range live {
		actions[name] = GroupAction{Name: name, Action: ActionNone}
	}
	if o.Groups != nil {
		liveObjs, err := liveObjects(ctx, k, o.Groups)
		if err != nil {
			return nil, plan, err
		}
		for _, want := range o.Groups {
			g, err := nodegroup.Decode(want)
			if err != nil {
				return nil, plan, err
			}
			name := want.GetName()
			desired[name] = g
			cur, ok := liveObjs[objectKey(want)]
			switch {
			case !ok:
				actions[name] = GroupAction{Name: name, Action: ActionCreate}
			default:
				if fields := specDiff(cur, want); len(fields) > 0 {
					actions[name] = GroupAction{Name: name, Action: ActionUpdate, Fields: fields}
				}
			}
		}
		for name := range live {
			if _, ok := desiredByName(o.Groups, name); !ok {
				plan.Warnings = append(plan.Warnings, fmt.Sprintf("NodeGroup %s is in the cluster but not in --config: it is left as it is (delete it with kubectl once it has no nodes)", name))
			}
		}
	}

	nodes, err := nodegroup.ListNodes(ctx, k.Typed())
	if err != nil {
		return nil, plan, err
	}
	lost := map[string]bool{}
	for i := range nodes {
		lost[nodes[i].Name] = nodegroup.Lost(&nodes[i])
	}
	nodePlans := nodegroup.PlanNodes(desired, nodes)
	status := nodegroup.StatusOf(nodegroup.PlanNodes(live, nodes))
	missing := map[string][]string{}
	for _, np := range nodePlans {
		action := ActionNone
		if !np.InSync() {
			action = ActionUpdate
		}
		plan.Nodes = append(plan.Nodes, NodeAction{Node: np.Node, Group: np.Group, Action: action, Ready: np.Ready, Changes: np.Changes, Exists: true, Lost: lost[np.Node]})
		switch _, known := desired[np.Group]; {
		case np.Group == "":
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("node %s has no %s label: it belongs to no node group, and nothing is applied to it", np.Node, config.NodeGroupLabel))
		case !known:
			missing[np.Group] = append(missing[np.Group], np.Node)
		}
	}
	if err := planStatic(o, desired, nodes, &plan); err != nil {
		return nil, plan, err
	}
	if o.Cloud != nil {
		if err := planCloud(ctx, o, &plan); err != nil {
			return nil, plan, err
		}
	}
	if err := planInterruptedJoins(ctx, o, k, nodes, &plan); err != nil {
		return nil, plan, err
	}
	for _, g := range sortedKeys(missing) {
		plan.Warnings = append(plan.Warnings, fmt.Sprintf("node group %s (nodes %s) has no NodeGroup: nothing is applied to its nodes (add a NodeGroup %s document to --config)",
			g, strings.Join(missing[g], ", "), g))
	}
	for _, name := range sortedKeys(actions) {
		a := actions[name]
		a.Status = status[name]
		plan.NodeGroups = append(plan.NodeGroups, a)
	}
	sort.Strings(plan.Warnings)
	return desired, plan, nil
}

func desiredByName(objs []*unstructured.Unstructured, name string) (*unstructured.Unstructured, bool) {
	for _, o := range objs {
		if o.GetName() == name {
			return o, true
		}
	}
	return nil, false
}

// liveObjects reads the live objects of the wanted ones that exist, by objectKey.
func liveObjects(ctx context.Context, k *kube.Client, want []*unstructured.Unstructured) (map[string]*unstructured.Unstructured, error) {
	out := map[string]*unstructured.Unstructured{}
	for _, w := range want {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		live, err := k.Get(cctx, w)
		cancel()
		var notServed *kube.KindNotServedError
		switch {
		case err == nil:
			out[objectKey(w)] = live
		case apierrors.IsNotFound(err), errors.As(err, &notServed):
		default:
			return nil, fmt.Errorf("reading %s %s: %w", w.GetKind(), w.GetName(), err)
		}
	}
	return out, nil
}

// objectKey names an object among others of several kinds.
func objectKey(o *unstructured.Unstructured) string { return o.GetKind() + "/" + o.GetName() }

// specDiff names the top-level spec fields of want that live does not have as wanted (fields
// only live has are someone else's, e.g. a platform's defaults, and are no difference).
func specDiff(live, want *unstructured.Unstructured) []string {
	ws, _, _ := unstructured.NestedMap(want.Object, "spec")
	ls, _, _ := unstructured.NestedMap(live.Object, "spec")
	var out []string
	for _, key := range sortedKeys(ws) {
		if !reflect.DeepEqual(normalize(ws[key]), normalize(ls[key])) {
			out = append(out, "spec."+key)
		}
	}
	return out
}

// normalize makes values decoded from YAML and from the API comparable (numbers, empty maps).
func normalize(v any) any {
	js, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	_ = json.Unmarshal(js, &out)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

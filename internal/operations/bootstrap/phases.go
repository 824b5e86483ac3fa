package bootstrap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/phase"
	"github.com/dhctl-dev/dhctl/internal/state"
)

// funcPhase is a leaf phase of the bootstrap: a function, optional inputs (resume) and an
// optional static condition.
type funcPhase struct {
	name, title string
	run         func(ctx context.Context) error
	inputs      func() (any, error) // nil: runs on every run
	when        bool                // with whyNot set: false skips the phase
	whyNot      string
	// skipIf, when set, decides at run time: a non-empty reason skips the phase.
	skipIf func() string
}

func (p *funcPhase) Name() string                     { return p.name }
func (p *funcPhase) Title() string                    { return p.title }
func (p *funcPhase) Run(ctx context.Context) error    { return p.run(ctx) }
func (p *funcPhase) DryRun(ctx context.Context) error { return nil }

func (p *funcPhase) ShouldRun(context.Context) (bool, string, error) {
	if p.whyNot != "" && !p.when {
		return false, p.whyNot, nil
	}
	if p.skipIf != nil {
		if reason := p.skipIf(); reason != "" {
			return false, reason, nil
		}
	}
	return true, "", nil
}

// inputsPhase adds WithInputs to a funcPhase that has inputs (the runner finds it by interface).
type inputsPhase struct{ *funcPhase }

func (p inputsPhase) Inputs() (any, error) { return p.inputs() }

// leaf returns the phase value with the interfaces it really has.
func leaf(p *funcPhase) phase.Phase {
	if p.inputs != nil {
		return inputsPhase{p}
	}
	return p
}

// InitSettings are what kubeadm init fixes for the cluster's life: a later run with other values
// would leave nodes and the control plane disagreeing.
type InitSettings struct {
	PodSubnetCIDR     string `json:"podSubnetCIDR"`
	ServiceSubnetCIDR string `json:"serviceSubnetCIDR"`
	ClusterDomain     string `json:"clusterDomain"`
	KubernetesVersion string `json:"kubernetesVersion"` // minor, resolved
}

func initSettingsOf(c *config.Cluster, vm *config.VersionMap) InitSettings {
	minor := c.KubernetesVersion
	if minor == "" {
		minor = vm.Default()
	}
	cc := c.ClusterConfiguration
	return InitSettings{PodSubnetCIDR: cc.PodSubnetCIDR, ServiceSubnetCIDR: cc.ServiceSubnetCIDR, ClusterDomain: cc.ClusterDomain, KubernetesVersion: minor}
}

// UnsafeChangeError says which settings kubeadm init fixed differ from the configuration.
type UnsafeChangeError struct {
	Changes []string // "ClusterConfiguration.podSubnetCIDR: 10.111.0.0/16 at init, now 10.112.0.0/16"
}

func (e *UnsafeChangeError) Error() string {
	return "the configuration changes what kubeadm init already fixed on the first master:\n  " +
		strings.Join(e.Changes, "\n  ") +
		"\nthese cannot change on an initialised control plane: put the values back in --config to resume the bootstrap, " +
		"or remove the cluster (dhctl bootstrap-phase abort) and bootstrap again with the new values"
}

// CheckUnsafeChanges compares the configuration with the settings recorded when the first
// master's bundle (kubeadm init) was started; none recorded means nothing was initialised yet.
func CheckUnsafeChanges(dir *state.Dir, c *config.Cluster, vm *config.VersionMap) error {
	data, err := dir.ReadFile(InitStateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state %s: %w", InitStateFile, err)
	}
	var was InitSettings
	if err := json.Unmarshal(data, &was); err != nil {
		return fmt.Errorf("state %s: %w (the file is damaged)", InitStateFile, err)
	}
	now := initSettingsOf(c, vm)
	var changes []string
	for _, f := range []struct{ field, was, now string }{
		{"ClusterConfiguration.podSubnetCIDR", was.PodSubnetCIDR, now.PodSubnetCIDR},
		{"ClusterConfiguration.serviceSubnetCIDR", was.ServiceSubnetCIDR, now.ServiceSubnetCIDR},
		{"ClusterConfiguration.clusterDomain", was.ClusterDomain, now.ClusterDomain},
		{"ClusterConfiguration.kubernetesVersion", was.KubernetesVersion, now.KubernetesVersion},
	} {
		if f.was != f.now {
			changes = append(changes, fmt.Sprintf("%s: %q at init, now %q", f.field, f.was, f.now))
		}
	}
	if len(changes) > 0 {
		return &UnsafeChangeError{Changes: changes}
	}
	return nil
}

// waitCluster waits, bounded, for every node of the run to be registered and Ready and for the
// API server's /readyz.
func (b *Bootstrap) waitCluster(ctx context.Context) error {
	k, err := b.kubeClient(ctx)
	if err != nil {
		return err
	}
	want := len(b.o.Masters) + len(b.o.Workers)
	ctx, cancel := context.WithTimeout(ctx, b.o.ClusterTimeout)
	defer cancel()
	var last string
	lastLog := time.Time{}
	for {
		body, rerr := k.Typed().Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		nodes, nerr := k.Typed().CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		switch {
		case rerr != nil:
			last = fmt.Sprintf("API server /readyz: %v %s", rerr, strings.TrimSpace(string(body)))
		case nerr != nil:
			last = fmt.Sprintf("listing nodes: %v", nerr)
		default:
			ready, notReady := nodeReadiness(nodes.Items)
			if len(ready) >= want && len(notReady) == 0 {
				b.o.Log.Info("cluster ready", "nodes", len(ready))
				return nil
			}
			last = fmt.Sprintf("%d of %d nodes Ready; not Ready: %s", len(ready), want, strings.Join(notReady, ", "))
		}
		if time.Since(lastLog) > 15*time.Second {
			b.o.Log.Info("waiting for the cluster", "status", last)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("waited %v for %d nodes Ready and the API server's /readyz: %s", b.o.ClusterTimeout, want, last)
			}
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func nodeReadiness(nodes []corev1.Node) (ready, notReady []string) {
	for _, n := range nodes {
		ok, why := false, "no Ready condition yet"
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				ok = c.Status == corev1.ConditionTrue
				why = c.Reason + ": " + c.Message
			}
		}
		if ok {
			ready = append(ready, n.Name)
		} else {
			notReady = append(notReady, n.Name+" ("+why+")")
		}
	}
	return ready, notReady
}

// NodeInfo is one node of the summary.
type NodeInfo struct {
	Name, Roles, Ready, InternalIP, Version string
}

// Nodes lists the cluster's nodes for the summary.
func (b *Bootstrap) Nodes(ctx context.Context) ([]NodeInfo, error) {
	k, err := b.kubeClient(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	list, err := k.Typed().CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	var out []NodeInfo
	for _, n := range list.Items {
		ni := NodeInfo{Name: n.Name, Ready: "NotReady", Version: n.Status.NodeInfo.KubeletVersion}
		var roles []string
		for l := range n.Labels {
			if r, ok := strings.CutPrefix(l, "node-role.kubernetes.io/"); ok {
				roles = append(roles, r)
			}
		}
		sort.Strings(roles)
		ni.Roles = strings.Join(roles, ",")
		if ni.Roles == "" {
			ni.Roles = "<none>"
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ni.Ready = "Ready"
			}
		}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ni.InternalIP = a.Address
			}
		}
		out = append(out, ni)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// WriteSummary prints what the user needs after a bootstrap: the kubeconfig, the nodes and where
// the time went.
func WriteSummary(w io.Writer, kubeconfig string, nodes []NodeInfo, res phase.Result, total time.Duration) {
	what := "Bootstrap finished"
	for _, p := range res.Phases {
		if p.Status == phase.StatusDryRun {
			what = "Dry run finished (nothing was changed)"
			break
		}
	}
	fmt.Fprintf(w, "\n%s in %v\n", what, total.Round(100*time.Millisecond))
	fmt.Fprintf(w, "Admin kubeconfig: %s\n  (kubectl --kubeconfig %s get nodes)\n", kubeconfig, kubeconfig)
	if len(nodes) > 0 {
		fmt.Fprintf(w, "\n%-24s %-9s %-16s %-16s %s\n", "NODE", "STATUS", "ROLES", "INTERNAL-IP", "VERSION")
		for _, n := range nodes {
			fmt.Fprintf(w, "%-24s %-9s %-16s %-16s %s\n", n.Name, n.Ready, n.Roles, n.InternalIP, n.Version)
		}
	}
	fmt.Fprintf(w, "\n%-36s %-20s %s\n", "PHASE", "STATUS", "TOOK")
	for _, p := range res.Phases {
		took := ""
		if p.Status == phase.StatusRan {
			took = p.Duration.Round(10 * time.Millisecond).String()
		}
		fmt.Fprintf(w, "%-36s %-20s %s\n", p.Path, p.Status, took)
	}
}

// canonical is the JSON of v (maps sorted), for comparing inputs.
func canonical(v any) (string, error) {
	data, err := json.Marshal(v)
	return string(data), err
}

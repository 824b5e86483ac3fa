// Package install is the install part of a bootstrap, after the first control-plane node is up:
// the CNI, the NodeGroup CRD and NodeGroups, the platform controller (Deckhouse-compatible, in
// d8-system) with its registry Secret and ModuleConfigs, the cluster state Secrets, a bounded wait
// for all of it to be ready, and finally the user's --resources. Each step is a phase.Phase, so
// the runner times it, checkpoints it and can resume after it; every object is server-side
// applied with the field manager "dhctl", so running it twice changes nothing.
package install

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/phase"
	"github.com/dhctl-dev/dhctl/templates"
)

// Defaults of the bounded waits (flags --deckhouse-timeout, --resources-timeout).
const (
	DefaultPlatformTimeout  = 15 * time.Minute
	DefaultResourcesTimeout = 10 * time.Minute
	// crdTimeout bounds how long custom resources of dhctl's own CRDs wait for them to be served.
	crdTimeout = 2 * time.Minute
	// progressEvery spaces "still waiting" log lines.
	progressEvery = 15 * time.Second
	// workloadPoll is how often the CNI's and CoreDNS's readiness is read: both waits are on the
	// bootstrap's critical path, and a read of a few objects is cheap.
	workloadPoll = 500 * time.Millisecond
)

// Options are what the install needs, as typed values.
type Options struct {
	// Kube is the cluster's API; or Connect opens it when the first phase needs it (a bootstrap
	// builds its phases before the control plane exists). Exactly one is set.
	Kube    *kube.Client
	Connect func(ctx context.Context) (*kube.Client, error)

	Cluster     *config.Cluster
	VersionMap  *config.VersionMap // every image tag (with any override applied)
	ClusterUUID string             // lower-case UUID (clusterstate.Local.ClusterUUID)

	// CNI overrides the CNI choice (see chooseCNI); "" = from ModuleConfigs, default flannel.
	CNI string
	// PlatformImage overrides the platform controller image (see
	// config.DeckhouseInit.PlatformImageRef).
	PlatformImage string
	// InstallerVersion is dhctl's version, recorded in d8-system/install-data.
	InstallerVersion string

	PlatformTimeout  time.Duration // 0 = DefaultPlatformTimeout
	ResourcesTimeout time.Duration // 0 = DefaultResourcesTimeout

	// Infra returns, when the cluster-state phase runs, a cloud cluster's infrastructure states
	// to keep in the cluster (they are made by earlier phases of the same run); nil for none.
	Infra func() (clusterstate.Infra, error)

	// ControlPlaneEndpoint returns, when the CNI is rendered, the host:port at which the kubelets
	// and kube-proxy reach the API server (kubeadm's controlPlaneEndpoint); the CNI's agent talks
	// to it there too. nil, or "" returned: the agent uses the kubernetes Service, which answers
	// on a node only once kube-proxy has programmed it.
	ControlPlaneEndpoint func() (string, error)

	// Templates is the manifests tree; nil = templates.FS (embedded).
	Templates fs.FS
	// Log receives progress; nil discards it.
	Log *slog.Logger
}

// Installer holds the rendered install and the (lazily opened) client.
type Installer struct {
	opts   Options
	values *Values
	log    *slog.Logger

	mu   sync.Mutex
	kube *kube.Client
}

// New checks the options and computes the template values; nothing touches the cluster yet.
func New(opts Options) (*Installer, error) {
	if opts.Cluster == nil {
		return nil, fmt.Errorf("install: no configuration")
	}
	if (opts.Kube == nil) == (opts.Connect == nil) {
		return nil, fmt.Errorf("install: set exactly one of Options.Kube and Options.Connect")
	}
	if opts.Templates == nil {
		opts.Templates = templates.FS
	}
	if opts.PlatformTimeout <= 0 {
		opts.PlatformTimeout = DefaultPlatformTimeout
	}
	if opts.ResourcesTimeout <= 0 {
		opts.ResourcesTimeout = DefaultResourcesTimeout
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	values, err := newValues(opts.Cluster, opts.VersionMap, opts.CNI, opts.PlatformImage, opts.InstallerVersion, opts.Templates)
	if err != nil {
		return nil, err
	}
	if _, err := clusterstate.Objects(clusterstate.Contents{Cluster: opts.Cluster, UUID: opts.ClusterUUID}); err != nil {
		return nil, err
	}
	return &Installer{opts: opts, values: values, log: log, kube: opts.Kube}, nil
}

// Values are the template values (for `config render`-style output and tests).
func (in *Installer) Values() Values { return *in.values }

func (in *Installer) client(ctx context.Context) (*kube.Client, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.kube != nil {
		return in.kube, nil
	}
	c, err := in.opts.Connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to the API server: %w", err)
	}
	in.kube = c
	return c, nil
}

// Phase names, for --skip-phase/--only-phase and `dhctl bootstrap-phase`.
const (
	PhaseInstall      = "install"
	PhaseCNI          = "cni"
	PhaseDNS          = "dns"
	PhaseNodeGroups   = "node-groups"
	PhasePlatform     = "platform"
	PhaseClusterState = "cluster-state"
	PhaseWaitPlatform = "wait-platform"
	// PhaseReleaseChannel is declared with its phase (platform.go).
	PhaseCreateResources = "create-resources"
)

// Describe is the install's phase group for listings (help, completion): names and titles only.
func Describe() phase.Group { return (&Installer{}).Group() }

// Group is the install as one phase group: install/cni, install/node-groups, install/platform,
// install/cluster-state, install/dns, install/wait-platform, install/release-channel. Names and
// titles do not depend on the configuration (see Describe).
func (in *Installer) Group() phase.Group {
	return phase.NewGroup(PhaseInstall, "Install the CNI and the platform", in.Phases()...)
}

// Phases are the group's children, in order.
func (in *Installer) Phases() []phase.Phase {
	return []phase.Phase{
		&applyPhase{in: in, name: PhaseCNI, title: "Install the CNI", objects: in.CNIObjects},
		&applyPhase{in: in, name: PhaseNodeGroups, title: "Create the NodeGroup CRD and NodeGroups", objects: in.NodeGroupObjects},
		&platformPhase{applyPhase{in: in, name: PhasePlatform, title: "Install the platform controller", objects: in.PlatformObjects}},
		&applyPhase{in: in, name: PhaseClusterState, title: "Store the cluster state in the cluster", objects: in.ClusterStateObjects},
		&dnsPhase{applyPhase{in: in, name: PhaseDNS, title: "Install CoreDNS once the CNI runs on the nodes", objects: in.DNSObjects}},
		&waitPhase{in: in},
		&releaseChannelPhase{in: in},
	}
}

// CNIObjects are the chosen CNI's manifests.
func (in *Installer) CNIObjects() ([]*unstructured.Unstructured, error) {
	v := *in.values
	if in.opts.ControlPlaneEndpoint != nil {
		endpoint, err := in.opts.ControlPlaneEndpoint()
		if err != nil {
			return nil, fmt.Errorf("the API server's address for the CNI: %w", err)
		}
		if endpoint != "" {
			host, port, err := net.SplitHostPort(endpoint)
			if err != nil {
				return nil, fmt.Errorf("the API server's address for the CNI: %q is not host:port", endpoint)
			}
			v.CNI.APIServer = &APIServerValues{Host: host, Port: port}
		}
	}
	return Render(in.opts.Templates, "cni/"+v.CNI.Name, &v)
}

// DNSObjects are CoreDNS's objects, named as kubeadm's add-on names them (kubeadm's own is
// disabled: see templates/dns).
func (in *Installer) DNSObjects() ([]*unstructured.Unstructured, error) {
	return Render(in.opts.Templates, "dns", in.values)
}

// NodeGroupObjects are the NodeGroup CRD, the StaticInstance and SSHCredentials CRDs (their
// objects are --resources, created later, and what converge reads when no --config gives
// them), the master NodeGroup and the configured NodeGroups.
func (in *Installer) NodeGroupObjects() ([]*unstructured.Unstructured, error) {
	var crd []*unstructured.Unstructured
	for _, file := range []string{"crds/nodegroup.yaml", "crds/staticinstance.yaml"} {
		objs, err := renderFile(in.opts.Templates, file, in.values)
		if err != nil {
			return nil, err
		}
		crd = append(crd, objs...)
	}
	groups, err := NodeGroups(in.opts.Cluster)
	if err != nil {
		return nil, err
	}
	return append(crd, groups...), nil
}

// PlatformObjects are d8-system, the controller's identity, the registry Secret, install-data,
// the ModuleConfig CRD, the configured ModuleConfigs (the deckhouse one always, its
// releaseChannel held back) and the controller's Deployment.
func (in *Installer) PlatformObjects() ([]*unstructured.Unstructured, error) {
	objs, err := Render(in.opts.Templates, "platform", in.values)
	if err != nil {
		return nil, err
	}
	crd, err := renderFile(in.opts.Templates, "crds/moduleconfig.yaml", in.values)
	if err != nil {
		return nil, err
	}
	mcs, err := documentsOfKind(in.opts.Cluster, config.KindModuleConfig)
	if err != nil {
		return nil, err
	}
	objs = append(append(objs, crd...), in.deckhouseModuleConfig())
	for _, mc := range mcs {
		if mc.GetName() != DeckhouseModuleConfig {
			objs = append(objs, mc)
		}
	}
	return objs, nil
}

// ClusterStateObjects are the Secrets and ConfigMap holding the cluster's configuration, UUID
// and infrastructure states.
func (in *Installer) ClusterStateObjects() ([]*unstructured.Unstructured, error) {
	c := clusterstate.Contents{Cluster: in.opts.Cluster, UUID: in.opts.ClusterUUID}
	if in.opts.Infra != nil {
		infra, err := in.opts.Infra()
		if err != nil {
			return nil, err
		}
		c.Infra = infra
	}
	return clusterstate.Objects(c)
}

// applyPhase applies a set of objects. Its inputs are the objects themselves: a resumed run skips
// it while they are unchanged.
type applyPhase struct {
	in          *Installer
	name, title string
	objects     func() ([]*unstructured.Unstructured, error)
}

func (p *applyPhase) Name() string  { return p.name }
func (p *applyPhase) Title() string { return p.title }

func (p *applyPhase) Inputs() (any, error) {
	objs, err := p.objects()
	if err != nil {
		return nil, err
	}
	return objectsDigestInput(objs)
}

func (p *applyPhase) Run(ctx context.Context) error {
	objs, err := p.objects()
	if err != nil {
		return err
	}
	c, err := p.in.client(ctx)
	if err != nil {
		return err
	}
	applied, err := c.ApplyAll(ctx, objs, kube.ApplyOptions{Timeout: crdTimeout, Progress: throttled(p.in.log, "waiting for kinds to be served")})
	if err != nil {
		return err
	}
	if p.name == PhaseCNI {
		p.in.log.Info("applied", "phase", p.name, "cni", p.in.values.CNI.Name, "objects", len(applied))
		return nil
	}
	p.in.log.Info("applied", "phase", p.name, "objects", len(applied))
	return nil
}

func (p *applyPhase) DryRun(context.Context) error {
	objs, err := p.objects()
	if err != nil {
		return err
	}
	kube.SortForApply(objs) // in the order Run applies them
	for _, o := range objs {
		p.in.log.Info("would apply", "phase", p.name, "object", kube.Ref(o))
	}
	return nil
}

// objectsDigestInput is the canonical JSON of the objects, for phase.WithInputs (hashed, never
// stored, so Secrets in it do not leak).
func objectsDigestInput(objs []*unstructured.Unstructured) (any, error) {
	out := make([]json.RawMessage, len(objs))
	for i, o := range objs {
		js, err := o.MarshalJSON()
		if err != nil {
			return nil, err
		}
		out[i] = js
	}
	return out, nil
}

// throttled logs a progress message at most every progressEvery.
func throttled(log *slog.Logger, msg string) func(waiting []string) {
	var last time.Time
	return func(waiting []string) {
		if time.Since(last) < progressEvery {
			return
		}
		last = time.Now()
		log.Info(msg, "objects", waiting)
	}
}

// waitPhase waits for the CNI's workloads and CoreDNS to be ready, and for the platform
// controller to have finished its first converge (platformWatch), all bounded by
// PlatformTimeout. It has no inputs: it checks every run.
type waitPhase struct{ in *Installer }

func (p *waitPhase) Name() string  { return PhaseWaitPlatform }
func (p *waitPhase) Title() string { return "Wait for the CNI, CoreDNS and the platform controller" }

// WaitTargets are the workloads wait-platform waits to be ready: the CNI's and CoreDNS's (the
// platform controller is followed by its own rules).
func (in *Installer) WaitTargets() ([]*unstructured.Unstructured, error) {
	cni, err := in.CNIObjects()
	if err != nil {
		return nil, err
	}
	dns, err := in.DNSObjects()
	if err != nil {
		return nil, err
	}
	return workloads(append(cni, dns...)), nil
}

// workloads are the objects that run pods.
func workloads(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "Deployment", "DaemonSet", "StatefulSet":
			out = append(out, o)
		}
	}
	return out
}

// dnsPhase applies CoreDNS only once the CNI is ready on every node scheduled so far. A pod
// whose sandbox is created before the CNI works on its node fails, and the kubelet retries it
// only 10-15 s later: CoreDNS created with the CNI would be ready that much after it. The wait is
// bounded by PlatformTimeout, and a cluster without nodes yet has nothing to wait for.
type dnsPhase struct{ applyPhase }

func (p *dnsPhase) Run(ctx context.Context) error {
	c, err := p.in.client(ctx)
	if err != nil {
		return err
	}
	nodes, err := c.Typed().CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return fmt.Errorf("listing the nodes: %w", err)
	}
	if len(nodes.Items) == 0 {
		return p.applyPhase.Run(ctx)
	}
	cni, err := p.in.CNIObjects()
	if err != nil {
		return err
	}
	if err := p.in.waitWorkloads(ctx, c, workloads(cni), "waiting for the CNI before CoreDNS"); err != nil {
		return fmt.Errorf("%w\n(CoreDNS is installed once the CNI runs; the wait is bounded by --deckhouse-timeout=%s)", err, p.in.opts.PlatformTimeout)
	}
	return p.applyPhase.Run(ctx)
}

// waitWorkloads waits for objs to be ready within PlatformTimeout, logging what it waits for
// (as msg) at most every progressEvery.
func (in *Installer) waitWorkloads(ctx context.Context, c *kube.Client, objs []*unstructured.Unstructured, msg string) error {
	var last time.Time
	return c.WaitReady(ctx, objs, kube.WaitOptions{
		Timeout:  in.opts.PlatformTimeout,
		Interval: workloadPoll,
		Progress: func(nr []kube.NotReady) {
			if time.Since(last) < progressEvery {
				return
			}
			last = time.Now()
			for _, n := range nr {
				in.log.Info(msg, "object", n.Object, "reason", n.Reason)
			}
		},
	})
}

func (p *waitPhase) Run(ctx context.Context) error {
	c, err := p.in.client(ctx)
	if err != nil {
		return err
	}
	targets, err := p.in.WaitTargets()
	if err != nil {
		return err
	}
	// The workloads and the platform are waited for at once, so that a failure names everything
	// that was not ready in the bound, not only the first.
	var wg sync.WaitGroup
	var workloadsErr, platformErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		workloadsErr = p.in.waitWorkloads(ctx, c, targets, "waiting")
	}()
	go func() {
		defer wg.Done()
		w := &platformWatch{in: p.in, c: c}
		platformErr = w.wait(ctx, p.in.opts.PlatformTimeout)
	}()
	wg.Wait()
	if err := joinNotReady(workloadsErr, platformErr); err != nil {
		return fmt.Errorf("%w\n(the wait is bounded by --deckhouse-timeout=%s)", err, p.in.opts.PlatformTimeout)
	}
	return nil
}

// joinNotReady merges the NotReadyErrors of parallel waits into one; any other error wins.
func joinNotReady(errs ...error) error {
	var merged *kube.NotReadyError
	for _, err := range errs {
		var nr *kube.NotReadyError
		switch {
		case err == nil:
		case !errors.As(err, &nr):
			return err
		case merged == nil:
			merged = &kube.NotReadyError{Waited: nr.Waited, Objects: append([]kube.NotReady(nil), nr.Objects...)}
		default:
			merged.Objects = append(merged.Objects, nr.Objects...)
			merged.Waited = max(merged.Waited, nr.Waited)
		}
	}
	if merged == nil {
		return nil
	}
	return merged
}

// ResourcesPhase creates the --resources documents once the platform is ready.
func (in *Installer) ResourcesPhase() phase.Phase {
	return NewResourcesPhase(in.client, in.opts.Cluster.Resources, in.opts.ResourcesTimeout, in.log)
}

// NewResourcesPhase is create-resources on its own (`dhctl bootstrap-phase create-resources`):
// it needs only a client and the documents. timeout 0 means DefaultResourcesTimeout.
func NewResourcesPhase(connect func(context.Context) (*kube.Client, error), resources []config.Document, timeout time.Duration, log *slog.Logger) phase.Phase {
	if timeout <= 0 {
		timeout = DefaultResourcesTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &resourcesPhase{connect: connect, resources: resources, timeout: timeout, log: log}
}

// resourcesPhase applies --resources in dependency order, retrying while their kinds are not
// served (CRDs from the resources themselves or from platform modules), then waits for the
// kinds whose readiness is known. Inputs: the documents.
type resourcesPhase struct {
	connect   func(context.Context) (*kube.Client, error)
	resources []config.Document
	timeout   time.Duration
	log       *slog.Logger
}

func (p *resourcesPhase) Name() string  { return PhaseCreateResources }
func (p *resourcesPhase) Title() string { return "Create the --resources" }

// isNodeConfig reports component configuration documents (KubeProxyConfiguration,
// KubeletConfiguration, kubeadm's) that the node bundle consumes: they are not API objects.
func isNodeConfig(apiVersion string) bool {
	group, _, _ := strings.Cut(apiVersion, "/")
	return strings.HasSuffix(group, ".config.k8s.io") || group == "kubeadm.k8s.io"
}

func (p *resourcesPhase) objects() ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, d := range p.resources {
		if isNodeConfig(d.APIVersion) {
			continue // configures the nodes (see internal/kubeadm), not something to create
		}
		obj, err := documentObject(d)
		if err != nil {
			return nil, err
		}
		if obj.GetName() == "" {
			return nil, fmt.Errorf("%s document %d (%s): no metadata.name", d.File, d.Index, d.Kind)
		}
		out = append(out, obj)
	}
	return out, nil
}

func (p *resourcesPhase) Inputs() (any, error) {
	objs, err := p.objects()
	if err != nil {
		return nil, err
	}
	return objectsDigestInput(objs)
}

func (p *resourcesPhase) ShouldRun(context.Context) (bool, string, error) {
	objs, err := p.objects()
	if err != nil {
		return false, "", err
	}
	if len(objs) == 0 {
		return false, "no --resources given", nil
	}
	return true, "", nil
}

func (p *resourcesPhase) DryRun(context.Context) error {
	objs, err := p.objects()
	if err != nil {
		return err
	}
	kube.SortForApply(objs)
	for _, o := range objs {
		p.log.Info("would apply", "phase", PhaseCreateResources, "object", kube.Ref(o))
	}
	return nil
}

func (p *resourcesPhase) Run(ctx context.Context) error {
	objs, err := p.objects()
	if err != nil {
		return err
	}
	c, err := p.connect(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	applied, err := c.ApplyAll(ctx, objs, kube.ApplyOptions{Timeout: p.timeout, Progress: throttled(p.log, "waiting for the kinds of resources to be served")})
	if err != nil {
		return fmt.Errorf("%w\n(bounded by --resources-timeout=%s)", err, p.timeout)
	}
	p.log.Info("resources applied", "objects", len(applied))
	remaining := p.timeout - time.Since(start)
	if remaining < 30*time.Second {
		remaining = 30 * time.Second
	}
	if err := c.WaitReady(ctx, applied, kube.WaitOptions{Timeout: remaining}); err != nil {
		return fmt.Errorf("%w\n(bounded by --resources-timeout=%s)", err, p.timeout)
	}
	return nil
}

// Package bootstrap is `dhctl bootstrap`: one phase tree from preflight to a Ready cluster,
// resumable from the state dir.
//
//	preflight               checks of every host (skipped once passed for the same hosts)
//	connect                 SSH to every host (every run)
//	first-master            node bundle + kubeadm init on the first master
//	install/...             CNI, NodeGroups, platform, cluster state, wait (internal/install)
//	nodes/masters           other control-plane nodes, one at a time
//	nodes/workers           workers, in parallel
//	create-resources        the --resources documents
//	wait-cluster            every node Ready, the API server's /readyz ok
//	post-bootstrap-script   optional, on the first master
//
// What later phases (and later runs) need is kept in the state dir, 0600, written atomically:
// node/join.json (bootstrap token, certificate key, CA hash; the same file as
// `bootstrap-phase execute-bashible-bundle` uses), kubeconfig (admin), cluster-uuid, and
// bootstrap/init.json: the settings kubeadm init fixed, which a later run may not change (see
// CheckUnsafeChanges).
package bootstrap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/install"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/kubeadm"
	"github.com/dhctl-dev/dhctl/internal/node"
	"github.com/dhctl-dev/dhctl/internal/operations/abort"
	"github.com/dhctl-dev/dhctl/internal/operations/nodebundle"
	"github.com/dhctl-dev/dhctl/internal/packages"
	"github.com/dhctl-dev/dhctl/internal/phase"
	"github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/internal/state"
)

// Phase names, for --skip-phase/--only-phase.
const (
	PhasePreflight     = "preflight"
	PhaseConnect       = "connect"
	PhaseFirstMaster   = "first-master"
	PhaseNodes         = "nodes"
	PhaseMasters       = "masters"
	PhaseWorkers       = "workers"
	PhaseWaitCluster   = "wait-cluster"
	PhasePostBootstrap = "post-bootstrap-script"
)

// State dir files. JoinStateFile and KubeconfigFile are shared with `bootstrap-phase
// execute-bashible-bundle`.
const (
	JoinStateFile  = "node/join.json"
	KubeconfigFile = "kubeconfig"
	InitStateFile  = "bootstrap/init.json"
)

// DefaultClusterTimeout bounds wait-cluster.
const DefaultClusterTimeout = 10 * time.Minute

// Host is one machine: how dhctl reaches it over SSH and the address other nodes reach it at.
type Host struct {
	SSH string // as given to --ssh-host (may carry :port)
	IP  string // node address
}

// Options are what the bootstrap needs, as typed values (the command fills them from a session).
type Options struct {
	Candi   fs.FS // candi.FS: the node bundle templates
	Cluster *config.Cluster
	// VersionMap is the version map with any override applied; VersionMapDigest identifies the
	// override ("" without one) so a changed override re-runs the node phases.
	VersionMap       *config.VersionMap
	VersionMapDigest string
	State            *state.Dir
	Log              *slog.Logger
	// Connect opens a connected SSH client to a host (session.Connect).
	Connect func(ctx context.Context, host string) (*ssh.Client, error)

	Masters []Host // the first is the first master
	Workers []Host

	// Preflight runs the checks (the command's runPreflight); nil skips the phase.
	Preflight func(ctx context.Context) error
	// PreflightInputs names what the checks depend on besides the hosts (skipped checks, minimums).
	PreflightInputs any

	UpstreamPackages bool // packages from the version map's URLs instead of the registry

	CNI              string
	PlatformImage    string
	PlatformTimeout  time.Duration
	ResourcesTimeout time.Duration
	ClusterTimeout   time.Duration // 0 = DefaultClusterTimeout

	// PostBootstrapScript is the local script run on the first master at the end ("" = none).
	PostBootstrapScript     string
	PostBootstrapScriptData []byte
}

// Bootstrap is one run's phase tree plus the resources the phases share (SSH clients, the
// packages endpoint, the API client). Close releases them.
type Bootstrap struct {
	o         Options
	installer *install.Installer

	mu       sync.Mutex
	clients  map[string]*ssh.Client
	pkgs     *packages.Server
	pkgsAddr string
	kube     *kube.Client
	plans    map[string]*nodebundle.Plan

	recordMu sync.Mutex // serialises abort's record of touched hosts
}

// New checks the options, refuses unsafe changes to a cluster kubeadm already initialised, and
// prepares the phases. Nothing is contacted yet.
func New(o Options) (*Bootstrap, error) {
	if o.Cluster == nil || o.State == nil || o.Connect == nil || o.VersionMap == nil || o.Candi == nil {
		return nil, errors.New("bootstrap: Candi, Cluster, State, Connect and VersionMap are required")
	}
	if len(o.Masters) == 0 {
		return nil, errors.New("no first master: give it with --ssh-host (the first --ssh-host is the first master)")
	}
	if err := checkHosts(o.Masters, o.Workers); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.ClusterTimeout <= 0 {
		o.ClusterTimeout = DefaultClusterTimeout
	}
	if err := CheckUnsafeChanges(o.State, o.Cluster, o.VersionMap); err != nil {
		return nil, err
	}
	uuid, err := install.ClusterUUID(o.State)
	if err != nil {
		return nil, err
	}
	b := &Bootstrap{o: o, clients: map[string]*ssh.Client{}, plans: map[string]*nodebundle.Plan{}}
	b.installer, err = install.New(install.Options{
		Connect:          b.kubeClient,
		Cluster:          o.Cluster,
		ClusterUUID:      uuid,
		CNI:              o.CNI,
		PlatformImage:    o.PlatformImage,
		PlatformTimeout:  o.PlatformTimeout,
		ResourcesTimeout: o.ResourcesTimeout,
		Log:              o.Log,
	})
	if err != nil {
		return nil, err
	}
	// The plan is also where a bad configuration shows: fail before any phase runs.
	if _, err := b.plan(o.Masters[0].IP); err != nil {
		return nil, err
	}
	return b, nil
}

func checkHosts(masters, workers []Host) error {
	seen := map[string]string{}
	for i, h := range append(append([]Host(nil), masters...), workers...) {
		role := "master"
		if i >= len(masters) {
			role = "worker"
		}
		if net.ParseIP(h.IP) == nil {
			return fmt.Errorf("%s host %q: node address %q is not an IP address", role, h.SSH, h.IP)
		}
		if prev, dup := seen[h.IP]; dup {
			return fmt.Errorf("host %q and host %q have the same node address %s: list every machine once", prev, h.SSH, h.IP)
		}
		seen[h.IP] = h.SSH
	}
	return nil
}

// Phases is the whole tree, in order.
func (b *Bootstrap) Phases() []phase.Phase {
	var out []phase.Phase
	if b.o.Preflight != nil {
		out = append(out, leaf(&funcPhase{name: PhasePreflight, title: "Preflight checks", run: b.o.Preflight,
			inputs: func() (any, error) {
				return map[string]any{"masters": b.o.Masters, "workers": b.o.Workers, "checks": b.o.PreflightInputs}, nil
			}, skipIf: b.preflightNotApplicable}))
	}
	out = append(out,
		leaf(&funcPhase{name: PhaseConnect, title: "Connect to every host over SSH", run: b.connectAll}),
		leaf(&funcPhase{name: PhaseFirstMaster, title: "Prepare the first master (node bundle, kubeadm init)", run: b.firstMaster,
			inputs: b.nodeInputs("first-master", b.o.Masters[:1])}),
		b.installer.Group(),
		phase.NewGroup(PhaseNodes, "Add the other masters and the workers",
			leaf(&funcPhase{name: PhaseMasters, title: "Join the other masters, one at a time", run: b.joinMasters,
				inputs: b.nodeInputs("masters", b.o.Masters[1:]), when: len(b.o.Masters) > 1, whyNot: "no other master in this cluster"}),
			leaf(&funcPhase{name: PhaseWorkers, title: "Join the workers, in parallel", run: b.joinWorkers,
				inputs: b.nodeInputs("workers", b.o.Workers), when: len(b.o.Workers) > 0, whyNot: "no worker in this cluster"}),
		),
		b.installer.ResourcesPhase(),
		leaf(&funcPhase{name: PhaseWaitCluster, title: "Wait for every node Ready and a healthy control plane", run: b.waitCluster}),
		leaf(&funcPhase{name: PhasePostBootstrap, title: "Run the post-bootstrap script on the first master", run: b.postBootstrap,
			inputs: func() (any, error) {
				return map[string]any{"script": digest(b.o.PostBootstrapScriptData), "host": b.o.Masters[0]}, nil
			}, when: b.o.PostBootstrapScript != "", whyNot: "no --post-bootstrap-script-path"}),
	)
	return out
}

// Close releases the connections and the packages endpoint.
func (b *Bootstrap) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	if b.kube != nil {
		errs = append(errs, b.kube.Close())
		b.kube = nil
	}
	for h, c := range b.clients {
		errs = append(errs, c.Close())
		delete(b.clients, h)
	}
	if b.pkgs != nil {
		errs = append(errs, b.pkgs.Close())
		b.pkgs = nil
	}
	return errors.Join(errs...)
}

// KubeconfigPath is where the admin kubeconfig is kept.
func (b *Bootstrap) KubeconfigPath() string {
	return filepath.Join(b.o.State.Path(), KubeconfigFile)
}

// client returns the run's (cached) SSH connection to host.
func (b *Bootstrap) client(ctx context.Context, host string) (*ssh.Client, error) {
	b.mu.Lock()
	if c, ok := b.clients[host]; ok {
		b.mu.Unlock()
		return c, nil
	}
	b.mu.Unlock()
	c, err := b.o.Connect(ctx, host)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if prev, ok := b.clients[host]; ok { // another goroutine won
		c.Close()
		return prev, nil
	}
	b.clients[host] = c
	return c, nil
}

func (b *Bootstrap) allHosts() []Host {
	return append(append([]Host(nil), b.o.Masters...), b.o.Workers...)
}

func (b *Bootstrap) connectAll(ctx context.Context) error {
	hosts := b.allHosts()
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.client(ctx, h.SSH); err != nil {
				errs[i] = fmt.Errorf("host %s: %w", h.SSH, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// plan is the node plan for a control-plane endpoint (the first master's address).
func (b *Bootstrap) plan(cp string) (*nodebundle.Plan, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.plans[cp]; ok {
		return p, nil
	}
	p, err := nodebundle.NewPlan(b.o.Candi, b.o.Cluster, b.o.VersionMap, cp)
	if err != nil {
		return nil, err
	}
	b.plans[cp] = p
	return p, nil
}

// packagesAddr starts the packages endpoint on first use.
func (b *Bootstrap) packagesAddr(p *nodebundle.Plan) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pkgs != nil {
		return b.pkgsAddr, nil
	}
	srv, addr, err := p.StartPackages(nodebundle.PackagesOptions{Upstream: b.o.UpstreamPackages,
		CacheDir: filepath.Join(b.o.State.Path(), "packages"), Log: b.o.Log})
	if err != nil {
		return "", err
	}
	b.pkgs, b.pkgsAddr = srv, addr
	return addr, nil
}

// nodeInputs: a node phase re-runs when its hosts, the node-level configuration or the version
// map override change, not when only --resources do.
func (b *Bootstrap) nodeInputs(what string, hosts []Host) func() (any, error) {
	return func() (any, error) {
		return map[string]any{
			"phase":       what,
			"hosts":       hosts,
			"firstMaster": b.o.Masters[0].IP,
			"cluster":     b.o.Cluster.ClusterConfiguration,
			"init":        b.o.Cluster.InitConfiguration,
			"static":      b.o.Cluster.StaticClusterConfiguration,
			"kubernetes":  b.o.Cluster.KubernetesVersion,
			"versionMap":  b.o.VersionMapDigest,
		}, nil
	}
}

// joinState is node/join.json (the same layout as `bootstrap-phase execute-bashible-bundle`).
type joinState struct {
	MasterIP string           `json:"masterIP"`
	Join     kubeadm.JoinInfo `json:"join"`
	Secrets  kubeadm.Secrets  `json:"secrets"`
}

func (b *Bootstrap) readJoin() (joinState, error) {
	var st joinState
	data, err := b.o.State.ReadFile(JoinStateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("state %s: %w", JoinStateFile, err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("state %s: %w (the file is damaged: restore it, or abort the bootstrap and start over)", JoinStateFile, err)
	}
	return st, nil
}

func (b *Bootstrap) writeJSON(name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return b.o.State.WriteFile(name, data)
}

func (b *Bootstrap) firstMaster(ctx context.Context) error {
	first := b.o.Masters[0]
	st, err := b.readJoin()
	if err != nil {
		return err
	}
	if st.MasterIP != "" && st.MasterIP != first.IP {
		return fmt.Errorf("this cluster's first master is %s (state %s), not %s: keep the first --ssh-host, or use another --cluster-name for a new cluster", st.MasterIP, JoinStateFile, first.IP)
	}
	secrets := st.Secrets
	if secrets.Token == "" {
		if secrets, err = kubeadm.NewSecrets(); err != nil {
			return err
		}
	}
	// Saved before kubeadm init may run: a re-run after kill -9 reuses the same token, and the
	// settings init fixes are recorded as soon as they can be in effect.
	if err := b.writeJSON(JoinStateFile, joinState{MasterIP: first.IP, Secrets: secrets, Join: st.Join}); err != nil {
		return err
	}
	if err := b.writeJSON(InitStateFile, initSettingsOf(b.o.Cluster, b.o.VersionMap)); err != nil {
		return err
	}
	p, err := b.plan(first.IP)
	if err != nil {
		return err
	}
	addr, err := b.packagesAddr(p)
	if err != nil {
		return err
	}
	c, err := b.client(ctx, first.SSH)
	if err != nil {
		return err
	}
	// Recorded before the machine is touched, so `bootstrap-phase abort` finds it after any failure.
	if err := b.recordHost(first, node.RoleMaster); err != nil {
		return err
	}
	res, err := p.BootstrapFirstMaster(ctx, c, first.IP, secrets, node.ExecOptions{PackagesAddr: addr, Log: b.o.Log})
	if err != nil {
		return err
	}
	if err := b.writeJSON(JoinStateFile, joinState{MasterIP: first.IP, Secrets: secrets, Join: res.Join}); err != nil {
		return err
	}
	if err := b.o.State.WriteFile(KubeconfigFile, res.Kubeconfig); err != nil {
		return err
	}
	b.o.Log.Info("first master ready", "host", first.SSH, "steps_run", len(res.Report.Ran()), "kubeconfig", b.KubeconfigPath())
	return nil
}

func (b *Bootstrap) joinInfo() (joinState, *nodebundle.Plan, string, error) {
	st, err := b.readJoin()
	if err != nil {
		return st, nil, "", err
	}
	if st.Join.Token == "" || st.MasterIP == "" {
		return st, nil, "", fmt.Errorf("no join data in the state dir (%s): the first master is not bootstrapped yet; run the bootstrap without --skip-phase %s", JoinStateFile, PhaseFirstMaster)
	}
	p, err := b.plan(st.MasterIP)
	if err != nil {
		return st, nil, "", err
	}
	addr, err := b.packagesAddr(p)
	return st, p, addr, err
}

func (b *Bootstrap) join(ctx context.Context, h Host, role node.Role) error {
	st, p, addr, err := b.joinInfo()
	if err != nil {
		return err
	}
	c, err := b.client(ctx, h.SSH)
	if err != nil {
		return err
	}
	if err := b.recordHost(h, role); err != nil {
		return err
	}
	rep, err := p.Join(ctx, c, h.IP, role, st.Join, node.ExecOptions{PackagesAddr: addr, Log: b.o.Log})
	if err != nil {
		return fmt.Errorf("%s %s: %w", role, h.SSH, err)
	}
	b.o.Log.Info("node joined", "host", h.SSH, "role", role, "steps_run", len(rep.Ran()))
	return nil
}

// recordHost notes in the state dir that dhctl is about to change host, for abort. Workers join
// in parallel and the record is one file, so writes take turns.
func (b *Bootstrap) recordHost(h Host, role node.Role) error {
	b.recordMu.Lock()
	defer b.recordMu.Unlock()
	return abort.RecordHost(b.o.State, h.SSH, string(role), time.Now())
}

// joinMasters joins control-plane nodes one at a time: etcd grows one member at a time, and a
// second join during a member add would fail (or worse, lose quorum).
func (b *Bootstrap) joinMasters(ctx context.Context) error {
	for _, h := range b.o.Masters[1:] {
		if err := b.join(ctx, h, node.RoleMaster); err != nil {
			return err
		}
	}
	return nil
}

// joinWorkers joins workers in parallel: they share nothing but the API server.
func (b *Bootstrap) joinWorkers(ctx context.Context) error {
	errs := make([]error, len(b.o.Workers))
	var wg sync.WaitGroup
	for i, h := range b.o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.join(ctx, h, node.RoleWorker)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// kubeClient is the API through an SSH tunnel to the first master (cached for the run).
func (b *Bootstrap) kubeClient(ctx context.Context) (*kube.Client, error) {
	b.mu.Lock()
	k := b.kube
	b.mu.Unlock()
	if k != nil {
		return k, nil
	}
	c, err := b.client(ctx, b.o.Masters[0].SSH)
	if err != nil {
		return nil, err
	}
	k, err = kube.ConnectSSH(ctx, kube.SSHOptions{SSH: c, Log: b.o.Log})
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.kube != nil {
		k.Close()
		return b.kube, nil
	}
	b.kube = k
	return k, nil
}

func (b *Bootstrap) postBootstrap(ctx context.Context) error {
	c, err := b.client(ctx, b.o.Masters[0].SSH)
	if err != nil {
		return err
	}
	name := filepath.Base(b.o.PostBootstrapScript)
	res, err := c.RunScript(ctx, name, b.o.PostBootstrapScriptData, nil, true)
	if err != nil {
		return fmt.Errorf("post-bootstrap script %s on %s: %w (fix the script and run the same command again: only this phase re-runs)", b.o.PostBootstrapScript, b.o.Masters[0].SSH, err)
	}
	b.o.Log.Info("post-bootstrap script finished", "script", b.o.PostBootstrapScript, "took", res.Duration)
	return nil
}

func digest(data []byte) string {
	if data == nil {
		return ""
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// preflightNotApplicable: once kubeadm init ran, the cluster's own machines fail the leftovers
// and ports checks by design, so a re-run whose hosts changed does not check them again.
func (b *Bootstrap) preflightNotApplicable() string {
	if _, err := b.o.State.ReadFile(InitStateFile); err == nil {
		return "the first master was initialised in an earlier run (its own kubelet and ports would fail the checks); " +
			"check a new machine with dhctl bootstrap-phase preflight --ssh-host <it>"
	}
	return ""
}

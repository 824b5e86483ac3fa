package nodebundle

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/inventory"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/kubeadm"
	"github.com/dhctl-dev/dhctl/internal/node"
	"github.com/dhctl-dev/dhctl/internal/packages"
	"github.com/dhctl-dev/dhctl/internal/ssh"
)

// NodesOptions are what Nodes needs.
type NodesOptions struct {
	Candi      fs.FS // candi.FS: the node bundle templates
	Cluster    *config.Cluster
	VersionMap *config.VersionMap // with any override applied
	State      *clusterstate.Local
	// UpstreamPackages takes packages from the version map's URLs instead of the registry.
	UpstreamPackages bool
	// PlatformImage is the platform controller's image, pulled by control-plane nodes while they
	// are prepared ("" = left to the kubelet).
	PlatformImage string
	Log           *slog.Logger
	Now           func() time.Time // nil = time.Now
}

// Nodes adds machines to one cluster: one plan per control-plane endpoint, one packages endpoint
// for the run (started on first use), and the first master's join data kept in the local state,
// so that a join in a later run (or by another command) finds it. Safe for concurrent use:
// workers join in parallel.
type Nodes struct {
	o NodesOptions

	mu       sync.Mutex
	plans    map[string]*Plan
	pkgs     *packages.Server
	pkgsAddr string
}

// NewNodes checks the options; nothing is started yet.
func NewNodes(o NodesOptions) (*Nodes, error) {
	if o.Candi == nil || o.Cluster == nil || o.VersionMap == nil || o.State == nil {
		return nil, errors.New("nodebundle: Candi, Cluster, VersionMap and State are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Nodes{o: o, plans: map[string]*Plan{}}, nil
}

// Plan is the plan for a control-plane endpoint (the first master's address), made once.
func (n *Nodes) Plan(controlPlaneHost string) (*Plan, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if p, ok := n.plans[controlPlaneHost]; ok {
		return p, nil
	}
	p, err := NewPlan(n.o.Candi, n.o.Cluster, n.o.VersionMap, controlPlaneHost)
	if err != nil {
		return nil, err
	}
	p.PlatformImage = n.o.PlatformImage
	n.plans[controlPlaneHost] = p
	return p, nil
}

// packagesAddr starts the packages endpoint on first use.
func (n *Nodes) packagesAddr(p *Plan) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pkgs != nil {
		return n.pkgsAddr, nil
	}
	srv, addr, err := p.StartPackages(PackagesOptions{Upstream: n.o.UpstreamPackages, CacheDir: n.o.State.PackagesCacheDir(), Log: n.o.Log})
	if err != nil {
		return "", err
	}
	n.pkgs, n.pkgsAddr = srv, addr
	return addr, nil
}

// Close stops the packages endpoint.
func (n *Nodes) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pkgs == nil {
		return nil
	}
	err := n.pkgs.Close()
	n.pkgs = nil
	return err
}

// FirstMaster runs kubeadm init on h through c (connected). The bootstrap token and certificate
// key are kept in the local state BEFORE init may run, so a re-run after kill -9 reuses them; the
// settings init fixes are recorded as soon as they can be in effect, and the host is recorded
// before it is touched, so a cleanup after any failure finds it. Afterwards the join data and the
// admin kubeconfig are saved.
func (n *Nodes) FirstMaster(ctx context.Context, c *ssh.Client, h inventory.Host) (Result, error) {
	st, err := n.o.State.Join()
	if err != nil {
		return Result{}, err
	}
	if st.MasterIP != "" && st.MasterIP != h.IP {
		return Result{}, fmt.Errorf("this cluster's first master is %s (state dir %s), not %s: keep the first --ssh-host, or use another --cluster-name for a new cluster", st.MasterIP, n.o.State.Path(), h.IP)
	}
	secrets := st.Secrets
	if secrets.Token == "" {
		if secrets, err = kubeadm.NewSecrets(); err != nil {
			return Result{}, err
		}
	}
	if err := n.o.State.SaveJoin(clusterstate.Join{MasterHost: h.SSH, MasterIP: h.IP, Secrets: secrets, Join: st.Join}); err != nil {
		return Result{}, err
	}
	if err := n.o.State.SaveInitSettings(InitSettingsOf(n.o.Cluster)); err != nil {
		return Result{}, err
	}
	p, err := n.Plan(h.IP)
	if err != nil {
		return Result{}, err
	}
	addr, err := n.packagesAddr(p)
	if err != nil {
		return Result{}, err
	}
	if err := n.o.State.RecordHost(h.SSH, string(inventory.Master), n.o.Now()); err != nil {
		return Result{}, err
	}
	res, err := p.BootstrapFirstMaster(ctx, c, h.IP, h.Name, h.NodeGroup, secrets, node.ExecOptions{PackagesAddr: addr, Log: n.o.Log})
	if err != nil {
		return res, err
	}
	if err := n.o.State.SaveJoin(clusterstate.Join{MasterHost: h.SSH, MasterIP: h.IP, Secrets: secrets, Join: res.Join}); err != nil {
		return res, err
	}
	if err := n.o.State.SaveKubeconfig(res.Kubeconfig); err != nil {
		return res, err
	}
	return res, nil
}

// Prepare runs, on h, every step of its bundle that needs no cluster (packages, containerd, the
// kubelet): all machines do this at once, before the first master's kubeadm init, so that init
// and the joins later run only their kubeadm step. firstMasterIP is the control-plane address
// the later bundle uses, so the prepared steps are the very scripts it skips. The host is
// recorded before it is touched.
func (n *Nodes) Prepare(ctx context.Context, c *ssh.Client, h inventory.Host, firstMasterIP string) (node.Report, error) {
	p, err := n.Plan(firstMasterIP)
	if err != nil {
		return node.Report{}, err
	}
	addr, err := n.packagesAddr(p)
	if err != nil {
		return node.Report{}, err
	}
	host, err := detectHost(ctx, c, h.Name)
	if err != nil {
		return node.Report{}, err
	}
	// The kubeadm step is dropped: its join data need not be real (the first master's are not
	// made yet, nor are the joiners').
	placeholder := kubeadm.JoinInfo{APIServerEndpoint: p.Kubeadm.ControlPlaneEndpoint, Token: "abcdef.0123456789abcdef",
		CACertHash: "sha256:" + strings.Repeat("0", 64), CertificateKey: strings.Repeat("0", 64)}
	secrets := kubeadm.Secrets{Token: placeholder.Token, CertificateKey: placeholder.CertificateKey}
	b, _, err := p.Render(Target{IP: h.IP, Role: h.Role, Init: h.IP == firstMasterIP, Host: host, Group: h.NodeGroup}, secrets, placeholder)
	if err != nil {
		return node.Report{}, err
	}
	if err := n.o.State.RecordHost(h.SSH, string(h.Role), n.o.Now()); err != nil {
		return node.Report{}, err
	}
	rep, err := node.Execute(ctx, c, b.Preparation(), node.ExecOptions{PackagesAddr: addr, Log: n.o.Log})
	if err != nil {
		return rep, fmt.Errorf("%s %s: %w", h.Role, h.SSH, err)
	}
	return rep, nil
}

// NotBootstrappedError says a node cannot join: the cluster's first master has no join data yet.
type NotBootstrappedError struct{ StateDir string }

func (e *NotBootstrappedError) Error() string {
	return fmt.Sprintf("no join data in the state dir %s: the cluster's first master is not bootstrapped yet (bootstrap it first, with the same --cluster-name)", e.StateDir)
}

// Join runs the bundle of a joining node h (a master joins the control plane) through c, with
// the join data of the local state.
func (n *Nodes) Join(ctx context.Context, c *ssh.Client, h inventory.Host) (node.Report, error) {
	st, err := n.o.State.Join()
	if err != nil {
		return node.Report{}, err
	}
	if !st.Ready() {
		return node.Report{}, &NotBootstrappedError{StateDir: n.o.State.Path()}
	}
	p, err := n.Plan(st.MasterIP)
	if err != nil {
		return node.Report{}, err
	}
	addr, err := n.packagesAddr(p)
	if err != nil {
		return node.Report{}, err
	}
	if err := n.o.State.RecordHost(h.SSH, string(h.Role), n.o.Now()); err != nil {
		return node.Report{}, err
	}
	rep, err := p.Join(ctx, c, h.IP, h.Name, h.NodeGroup, h.Role, st.Join, node.ExecOptions{PackagesAddr: addr, Log: n.o.Log})
	if err != nil {
		return rep, fmt.Errorf("%s %s: %w", h.Role, h.SSH, err)
	}
	return rep, nil
}

// EnsureJoinToken replaces the join token of the local state when the cluster no longer has it
// (kube.EnsureBootstrapToken): the first one lives 24 h, so a node added later would not join
// with it; join data restored from the cluster (RestoreJoin) get their first one here. Without
// join data it does nothing (a join then says the cluster is not bootstrapped).
func (n *Nodes) EnsureJoinToken(ctx context.Context, k kubernetes.Interface) (renewed bool, err error) {
	st, err := n.o.State.Join()
	if err != nil || st.MasterIP == "" {
		return false, err
	}
	fresh := func() (string, error) {
		s, err := kubeadm.NewSecrets()
		return s.Token, err
	}
	token, renewed, err := kube.EnsureBootstrapToken(ctx, k, st.Join.Token, fresh, n.o.Now())
	if err != nil || !renewed {
		return false, err
	}
	why := "the join token had expired or was deleted"
	if st.Join.Token == "" {
		why = "the join data were read from the cluster, without a token"
	}
	st.Join.Token, st.Secrets.Token = token, token
	if err := n.o.State.SaveJoin(st); err != nil {
		return false, err
	}
	n.o.Log.Info(why+": made a new one, valid for "+kube.BootstrapTokenTTL.String(), "token_id", strings.SplitN(token, ".", 2)[0])
	return true, nil
}

// Package bootstrap is `dhctl bootstrap`: one phase tree from preflight to a Ready cluster,
// resumable from the state dir. The same tree serves the `bootstrap-phase` sub-commands (each
// runs a part of it alone, see Commands), the phase lists of --help and the completion of
// --skip-phase/--only-phase (see Tree), so adding a phase cannot leave either stale.
//
// The machines come from an inventory read when each phase runs: a condition such as "are there
// other masters to join" is decided then, not when the tree is built. What later phases (and
// later runs) need is kept in the cluster's local state (internal/clusterstate).
package bootstrap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/exitcode"
	"github.com/dhctl-dev/dhctl/internal/infra"
	"github.com/dhctl-dev/dhctl/internal/install"
	"github.com/dhctl-dev/dhctl/internal/inventory"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/nodebundle"
	"github.com/dhctl-dev/dhctl/internal/phase"
	"github.com/dhctl-dev/dhctl/internal/preflight"
	"github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/providers"
)

// DefaultClusterTimeout bounds wait-cluster.
const DefaultClusterTimeout = 10 * time.Minute

// Options are what the bootstrap needs, as typed values (the command fills them from a session).
type Options struct {
	Candi   fs.FS // candi.FS: the node bundle templates
	Cluster *config.Cluster
	// VersionMap is the version map with any override applied; VersionMapDigest identifies the
	// override ("" without one) so a changed override re-runs the node phases.
	VersionMap       *config.VersionMap
	VersionMapDigest string
	State            *clusterstate.Local
	Log              *slog.Logger
	// Out receives the reports meant for people (the preflight table); nil discards them.
	Out io.Writer

	// Inventory holds the machines; the first master is kubeadm init's.
	Inventory *inventory.Inventory
	// Connect opens a connected SSH client to a host; Clients builds unconnected ones (the
	// preflight connects them itself, in parallel). Both come from the session.
	Connect func(ctx context.Context, host string) (*ssh.Client, error)
	Clients func(hosts []string) ([]*ssh.Client, error)

	Preflight PreflightOptions

	// Provider is the cloud of a Cloud cluster (nil for a static one); Infra runs its steps and
	// Layout names its layout ("" = the provider document's).
	Provider providers.Provider
	Infra    *infra.Runner
	Layout   string

	// Kubeconfig reaches the API server with this file instead of an SSH tunnel to the first
	// master ("" = the tunnel).
	Kubeconfig string

	UpstreamPackages bool // packages from the version map's URLs instead of the registry

	CNI              string
	PlatformImage    string
	InstallerVersion string // dhctl's version, recorded in the cluster (d8-system/install-data)
	PlatformTimeout  time.Duration
	ResourcesTimeout time.Duration
	ClusterTimeout   time.Duration // 0 = DefaultClusterTimeout

	// PostBootstrapScript is the local script run on the first master at the end ("" = none).
	PostBootstrapScript     string
	PostBootstrapScriptData []byte
}

// PreflightOptions tune the preflight phase.
type PreflightOptions struct {
	Skip     []string
	Minimums map[inventory.Role]preflight.Minimums
}

// Bootstrap is one run's phase tree plus the resources the phases share (SSH clients, the node
// flow with its packages endpoint, the API client). Close releases them.
type Bootstrap struct {
	o         Options
	nodes     *nodebundle.Nodes
	installer *install.Installer
	// install and resources are the install's phases: the installer's, or their descriptions
	// for Tree.
	install   phase.Group
	resources phase.Phase

	mu      sync.Mutex
	clients map[string]*ssh.Client
	kube    *kube.Client
}

// New checks the options, refuses unsafe changes to a cluster kubeadm already initialised, and
// prepares the phases. Nothing is contacted yet. A configuration or inventory that cannot work is
// a usage error (exit 2); a state dir that cannot be read is not.
func New(o Options) (*Bootstrap, error) {
	if o.Cluster == nil || o.State == nil || o.Connect == nil || o.Clients == nil || o.VersionMap == nil || o.Candi == nil || o.Inventory == nil {
		return nil, errors.New("bootstrap: Candi, Cluster, State, Connect, Clients, VersionMap and Inventory are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.ClusterTimeout <= 0 {
		o.ClusterTimeout = DefaultClusterTimeout
	}
	if (o.Provider == nil) != (o.Infra == nil) {
		return nil, errors.New("bootstrap: Provider and Infra go together")
	}
	if o.Provider != nil {
		// The machines earlier runs made, for the phases that run without node-infra.
		if err := machinesFromState(o.State, o.Inventory); err != nil {
			return nil, err
		}
	}
	if err := nodebundle.CheckUnsafeChanges(o.State, o.Cluster); err != nil {
		var u *nodebundle.UnsafeChangeError
		if errors.As(err, &u) {
			return nil, exitcode.Usage(err)
		}
		return nil, err
	}
	uuid, err := o.State.ClusterUUID()
	if err != nil {
		return nil, err
	}
	b := &Bootstrap{o: o, clients: map[string]*ssh.Client{}}
	b.installer, err = install.New(install.Options{
		Connect:              b.kubeClient,
		Cluster:              o.Cluster,
		VersionMap:           o.VersionMap,
		ClusterUUID:          uuid,
		CNI:                  o.CNI,
		PlatformImage:        o.PlatformImage,
		InstallerVersion:     o.InstallerVersion,
		PlatformTimeout:      o.PlatformTimeout,
		ResourcesTimeout:     o.ResourcesTimeout,
		Infra:                b.infraStates,
		ControlPlaneEndpoint: b.controlPlaneEndpoint,
		Log:                  o.Log,
	})
	if err != nil {
		return nil, exitcode.Usage(err)
	}
	b.install, b.resources = b.installer.Group(), b.installer.ResourcesPhase()
	if b.nodes, err = nodebundle.NewNodes(nodebundle.NodesOptions{Candi: o.Candi, Cluster: o.Cluster, VersionMap: o.VersionMap,
		State: o.State, UpstreamPackages: o.UpstreamPackages, PlatformImage: b.installer.Values().Platform.Image, Log: o.Log}); err != nil {
		return nil, err
	}
	// The node plan is also where a bad configuration shows: fail before any phase runs. The
	// control-plane address it needs is the first master's, when the inventory already has one.
	if fm, ok := o.Inventory.FirstMaster(); ok {
		if _, err := b.nodes.Plan(fm.IP); err != nil {
			return nil, exitcode.Usage(err)
		}
	}
	return b, nil
}

// Tree is the phase tree of every bootstrap, for listings: the same phases (names, titles,
// nesting) as Phases, with nothing configured.
func Tree() []phase.Phase {
	b := &Bootstrap{install: install.Describe(), resources: install.NewResourcesPhase(nil, nil, 0, nil)}
	return b.Phases()
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
	if b.nodes != nil {
		errs = append(errs, b.nodes.Close())
	}
	return errors.Join(errs...)
}

// KubeconfigPath is where the admin kubeconfig is kept.
func (b *Bootstrap) KubeconfigPath() string { return b.o.State.KubeconfigPath() }

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

// firstMaster is the inventory's first master, or an error saying how to give one.
func (b *Bootstrap) firstMaster() (inventory.Host, error) {
	fm, ok := b.o.Inventory.FirstMaster()
	if !ok {
		return fm, exitcode.Usage(errors.New("no first master: give it with --ssh-host (the first --ssh-host is the first master)"))
	}
	return fm, nil
}

// controlPlaneEndpoint is the kubeadm controlPlaneEndpoint of the node plan, which the kubelets
// and kube-proxy use; "" with --kubeconfig and no first master known.
func (b *Bootstrap) controlPlaneEndpoint() (string, error) {
	fm, ok := b.o.Inventory.FirstMaster()
	if !ok {
		if b.o.Kubeconfig != "" {
			return "", nil
		}
		_, err := b.firstMaster()
		return "", err
	}
	p, err := b.nodes.Plan(fm.IP)
	if err != nil {
		return "", err
	}
	return p.Kubeadm.ControlPlaneEndpoint, nil
}

// kubeClient is the API through --kubeconfig, or an SSH tunnel to the first master (cached for
// the run).
func (b *Bootstrap) kubeClient(ctx context.Context) (*kube.Client, error) {
	b.mu.Lock()
	k := b.kube
	b.mu.Unlock()
	if k != nil {
		return k, nil
	}
	if b.o.Kubeconfig != "" {
		c, err := kube.FromKubeconfig(b.o.Kubeconfig)
		if err != nil {
			return nil, exitcode.Usage(err)
		}
		k = c
	} else {
		fm, err := b.firstMaster()
		if err != nil {
			return nil, fmt.Errorf("no way to reach the API server: %w, or give a --kubeconfig", err)
		}
		c, err := b.client(ctx, fm.SSH)
		if err != nil {
			return nil, err
		}
		if k, err = kube.ConnectSSH(ctx, kube.SSHOptions{SSH: c, Log: b.o.Log}); err != nil {
			return nil, err
		}
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

func digest(data []byte) string {
	if data == nil {
		return ""
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Package destroy is `dhctl destroy`: it removes a cluster and everything dhctl made for it. With
// the API server: the converge lock taken (and kept, so no converge races the destroy), the
// platform controller deleted, then PodDisruptionBudgets, Services of type LoadBalancer and
// PersistentVolumeClaims (waiting, bounded, for the cloud objects behind them to go). Then a cloud
// cluster's machines and base infrastructure are destroyed through the engine, a static
// cluster's machines cleaned over SSH; last, the local state forgets the cluster. Every step is
// idempotent: interrupted anywhere, a re-run finishes; with the API server gone it works from the
// state dir alone; a destroyed cluster is reported as such.
package destroy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dhctl-dev/dhctl/internal/cleanup"
	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/infra"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/providers"
)

// DefaultResourcesTimeout bounds each wait for in-cluster objects to go.
const DefaultResourcesTimeout = 5 * time.Minute

// Options are what a destroy needs.
type Options struct {
	Name  string // the cluster's name, for messages
	State *clusterstate.Local
	Candi fs.FS
	// Kube opens the API server (through the first master); nil with --skip-resources, which
	// never contacts it.
	Kube func(ctx context.Context) (*kube.Client, error)
	// Hosts are machines to clean besides those the state and the cluster know (--ssh-host).
	Hosts   []string
	Clients func(hosts []string) ([]*ssh.Client, error)
	// A cloud cluster: its provider, the engine's runner and its configuration.
	Provider providers.Provider
	Infra    *infra.Runner
	Cluster  *config.Cluster
	// Confirm is shown what will be removed; an error stops before anything changes.
	Confirm          func(what []string) error
	ResourcesTimeout time.Duration
	Concurrency      int
	Out              io.Writer
	Log              *slog.Logger
	Now              func() time.Time
}

// Run destroys the cluster.
func Run(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ResourcesTimeout <= 0 {
		o.ResourcesTimeout = DefaultResourcesTimeout
	}
	// What the state dir knows, before anything else: a destroyed cluster is reported as such.
	touched, err := o.State.TouchedHosts()
	if err != nil {
		return err
	}
	join, err := o.State.Join()
	if err != nil {
		return err
	}
	var steps providers.Steps
	var made []providers.NodeSpec
	var base bool
	if o.Provider != nil {
		uuid, err := o.State.ClusterUUID()
		if err != nil {
			return err
		}
		d, err := o.State.DiscoveryData()
		if err != nil {
			return err
		}
		steps = providers.Steps{Provider: o.Provider, Cluster: o.Cluster, UUID: uuid, Discovery: d}
		if made, base, err = steps.Made(o.State); err != nil {
			return err
		}
	}
	if len(touched) == 0 && len(made) == 0 && !base && join.MasterIP == "" && len(o.Hosts) == 0 {
		fmt.Fprintf(o.Out, "cluster %s is already destroyed: its state dir %s records no machine and no infrastructure\n", o.Name, o.State.Path())
		return nil
	}

	// The API server, when asked for and reachable: the lock, the cluster's objects, its nodes.
	var k *kube.Client
	var lock *kube.Lock
	var nodeIPs []string
	deleted, at, err := o.State.ResourcesDeleted()
	if err != nil {
		return err
	}
	if deleted {
		fmt.Fprintf(o.Out, "the cluster's objects were deleted by an earlier destroy (%s): the API server is left alone, the machines are removed\n", at.Format(time.RFC3339))
	}
	if o.Kube != nil && join.MasterIP != "" && !deleted {
		if k, err = connect(ctx, o); err != nil {
			o.Log.Warn("the API server does not answer: destroying from the state dir alone", "error", err)
			fmt.Fprintf(o.Out, "API server unreachable (%v): the cluster's own objects are not deleted; the machines are removed from what the state dir records\n", err)
		}
	}
	if k != nil {
		defer k.Close()
		if lock, err = kube.AcquireLock(ctx, k.Typed(), kube.Holder()+" (destroy)", 0); err != nil {
			var locked *kube.LockedError
			if errors.As(err, &locked) || !apierrors.IsNotFound(err) {
				return err
			}
			lock = nil // no d8-system: the install never got as far as making the lock's namespace
		}
		// The lock is kept until the end: the cluster is going away, and no converge may race it.
		if nodeIPs, err = clusterNodeIPs(ctx, k.Typed()); err != nil {
			return err
		}
	}
	hosts := staticHosts(touched, o.Hosts, nodeIPs)

	var what []string
	if k != nil {
		what = append(what, "the cluster's objects: platform controller, PodDisruptionBudgets, LoadBalancer Services, PersistentVolumeClaims")
	}
	if o.Provider != nil {
		for _, s := range made {
			what = append(what, "machine "+s.Name+" (destroyed)")
		}
		if base {
			what = append(what, "the base infrastructure")
		}
	} else {
		for _, h := range hosts {
			what = append(what, "node "+h+" (cleaned: kubeadm reset, kubelet, containerd, CNI, /etc/kubernetes, /var/lib/etcd)")
		}
	}
	what = append(what, "the local state of cluster "+o.Name+" in "+o.State.Path())
	if o.Confirm != nil {
		if err := o.Confirm(what); err != nil {
			if lock != nil {
				_ = lock.Release(ctx)
			}
			return err
		}
	}
	if k != nil {
		if err := deleteResources(ctx, o, k.Typed(), lock); err != nil {
			return err
		}
		if err := o.State.MarkResourcesDeleted(o.Now()); err != nil {
			return err
		}
	}
	if o.Provider != nil {
		if err := steps.DestroyAll(ctx, o.Infra, o.State, made, base, o.Out, o.Log); err != nil {
			return err
		}
		gone := make([]string, 0, len(touched))
		for _, h := range touched {
			gone = append(gone, h.Host)
		}
		_, err = o.State.ForgetHosts(gone, nil, o.Now())
		return err
	}
	// Every machine to clean is recorded first: a re-run after an interruption, which no longer
	// asks the cluster for its nodes, still knows them all.
	recorded := map[string]bool{}
	for _, t := range touched {
		recorded[t.Host] = true
	}
	for _, h := range hosts {
		if !recorded[h] {
			if err := o.State.RecordHost(h, "node", o.Now()); err != nil {
				return err
			}
		}
	}
	return cleanHosts(ctx, o, hosts)
}

func connect(ctx context.Context, o Options) (*kube.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	k, err := o.Kube(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := k.Typed().Discovery().ServerVersion(); err != nil {
		k.Close()
		return nil, err
	}
	return k, nil
}

// clusterNodeIPs are the Nodes' internal addresses: machines converge added are known there.
func clusterNodeIPs(ctx context.Context, k kubernetes.Interface) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	nodes, err := k.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing the nodes: %w", err)
	}
	var out []string
	for _, n := range nodes.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				out = append(out, a.Address)
			}
		}
	}
	return out, nil
}

// staticHosts are the recorded machines, then the given ones, then the cluster's nodes not among
// them (by address), each once.
func staticHosts(touched []clusterstate.TouchedHost, given, nodeIPs []string) []string {
	var out []string
	seenIP := map[string]bool{}
	add := func(h string) {
		if slices.Contains(out, h) {
			return
		}
		out = append(out, h)
		ip := h
		if host, _, err := net.SplitHostPort(h); err == nil {
			ip = host
		}
		seenIP[ip] = true
	}
	for _, t := range touched {
		add(t.Host)
	}
	for _, h := range given {
		add(h)
	}
	for _, ip := range nodeIPs {
		if !seenIP[ip] {
			add(ip)
		}
	}
	return out
}

// cleanHosts cleans every static machine; one that cannot be cleaned is reported by name, stays
// recorded for a re-run, and fails the command (the others are cleaned all the same).
func cleanHosts(ctx context.Context, o Options, hosts []string) error {
	if len(hosts) > 0 {
		rep, err := cleanup.Hosts(ctx, o.Candi, hosts, o.Clients, cleanup.Options{Concurrency: o.Concurrency, Log: o.Log}, o.Out)
		if err != nil {
			return err
		}
		if _, err := o.State.ForgetHosts(rep.Cleaned(), rep.NotCleaned(), o.Now()); err != nil {
			return err
		}
		if !rep.AllCleaned() {
			return fmt.Errorf("destroy did not clean every machine (not cleaned: %v; the state dir keeps them: run destroy again once they are reachable): %w", rep.NotCleaned(), rep.Err())
		}
		return nil
	}
	_, err := o.State.ForgetHosts(nil, nil, o.Now())
	return err
}

// Package abort is `dhctl bootstrap-phase abort`: it removes what a failed bootstrap made on its
// machines, so they can be bootstrapped again. The machines are those the cluster's local state
// recorded as touched (before anything ran on them) plus any named on the command line; each is
// cleaned by internal/cleanup, all at once, and the local state then forgets the cluster (or keeps
// the machines that could not be cleaned, so a re-run finds them).
package abort

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"time"

	"github.com/dhctl-dev/dhctl/internal/cleanup"
	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/exitcode"
	"github.com/dhctl-dev/dhctl/internal/infra"
	"github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/providers"
)

// Options are what an abort needs.
type Options struct {
	Name  string // the cluster's name, for messages
	State *clusterstate.Local
	Candi fs.FS
	// Hosts are machines to clean besides the recorded ones (--ssh-host).
	Hosts []string
	// Clients builds one unconnected SSH client per host (the cleanup connects them).
	Clients func(hosts []string) ([]*ssh.Client, error)
	// Force aborts a cluster whose bootstrap finished; ForceFlag names the flag that sets it.
	Force     bool
	ForceFlag string
	// Confirm is asked with the machines about to be cleaned; an error stops the abort before
	// anything is changed. nil: no confirmation.
	Confirm     func(cluster string, hosts []string) error
	Concurrency int
	Out         io.Writer // the per-host report
	Log         *slog.Logger
	Now         func() time.Time

	// A cloud cluster's machines are destroyed with the infrastructure instead of cleaned:
	// Provider and Infra run its steps, Cluster is its configuration (nil for a static cluster).
	Provider providers.Provider
	Infra    *infra.Runner
	Cluster  *config.Cluster
}

// Run cleans the machines and updates the local state. It fails (after cleaning every machine it
// could) when one was not cleaned.
func Run(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	done, at, err := o.State.Completed()
	if err != nil {
		return err
	}
	if done && !o.Force {
		return exitcode.Usage(fmt.Errorf("the bootstrap of cluster %s finished (%s, state dir %s): abort would destroy a cluster that may be in use; pass --%s if that is what you want",
			o.Name, at.Format(time.RFC3339), o.State.Path(), o.ForceFlag))
	}
	if o.Provider != nil {
		return destroyInfra(ctx, o)
	}
	hosts, err := Hosts(o.State, o.Hosts)
	if err != nil {
		return err
	}
	if len(hosts) == 0 {
		return exitcode.Usage(fmt.Errorf("no hosts to clean: the state dir %s records none for cluster %s; name them with --ssh-host (and --cluster-name for the cluster's state dir)",
			o.State.Path(), o.Name))
	}
	if o.Confirm != nil {
		if err := o.Confirm(o.Name, hosts); err != nil {
			return err
		}
	}
	start := o.Now()
	rep, err := cleanup.Hosts(ctx, o.Candi, hosts, o.Clients, cleanup.Options{Concurrency: o.Concurrency, Log: o.Log}, o.Out)
	if err != nil {
		return err
	}
	reset, err := o.State.ForgetHosts(rep.Cleaned(), rep.NotCleaned(), o.Now())
	if err != nil {
		return err
	}
	o.Log.Info("abort finished", "hosts", len(hosts), "cleaned", len(rep.Cleaned()), "state_reset", reset, "took", o.Now().Sub(start).Round(10*time.Millisecond))
	if !rep.AllCleaned() {
		return fmt.Errorf("abort did not clean every host (the state dir still lists them; re-run abort once they are reachable): %w", rep.Err())
	}
	return nil
}

// Hosts is every recorded host, then every extra host not recorded, without duplicates.
func Hosts(l *clusterstate.Local, extra []string) ([]string, error) {
	recorded, err := l.TouchedHosts()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var hosts []string
	for _, h := range recorded {
		if !seen[h.Host] {
			seen[h.Host] = true
			hosts = append(hosts, h.Host)
		}
	}
	for _, h := range extra {
		if !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	return hosts, nil
}

// destroyInfra destroys what a cloud bootstrap made so far: every machine with a state (the
// last made first), then the base infrastructure, then the local state forgets the cluster.
func destroyInfra(ctx context.Context, o Options) error {
	uuid, err := o.State.ClusterUUID()
	if err != nil {
		return err
	}
	d, err := o.State.DiscoveryData()
	if err != nil {
		return err
	}
	steps := providers.Steps{Provider: o.Provider, Cluster: o.Cluster, UUID: uuid, Discovery: d}
	made, base, err := steps.Made(o.State)
	if err != nil {
		return exitcode.Usage(err)
	}
	if len(made) == 0 && !base {
		if _, err := o.State.ForgetHosts(nil, nil, o.Now()); err != nil {
			return err
		}
		fmt.Fprintf(o.Out, "cluster %s: no infrastructure recorded in %s: nothing to destroy\n", o.Name, o.State.Path())
		return nil
	}
	if o.Confirm != nil {
		var what []string
		for _, s := range made {
			what = append(what, "machine "+s.Name)
		}
		if base {
			what = append(what, "the base infrastructure")
		}
		if err := o.Confirm(o.Name, what); err != nil {
			return err
		}
	}
	if err := steps.DestroyAll(ctx, o.Infra, o.State, made, base, o.Out, o.Log); err != nil {
		return err
	}
	touched, err := o.State.TouchedHosts()
	if err != nil {
		return err
	}
	var gone []string
	for _, h := range touched {
		gone = append(gone, h.Host) // their machines no longer exist
	}
	_, err = o.State.ForgetHosts(gone, nil, o.Now())
	return err
}

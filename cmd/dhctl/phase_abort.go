package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/internal/exitcode"
	"github.com/dhctl-dev/dhctl/internal/operations/abort"
	"github.com/dhctl-dev/dhctl/internal/session"
	"github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/internal/state"
)

// dhctl bootstrap-phase abort (issue #7): remove what a failed bootstrap made.

const forceFinishedFlag = "force-abort-finished-cluster"

func newAbortPhaseCommand(opts *globalOptions) *cobra.Command {
	var force bool
	var concurrency int
	cmd := &cobra.Command{
		Use:   "abort",
		Short: "Remove what a failed bootstrap made on its hosts, so they can be bootstrapped again",
		Long: `Clean every host a node bundle ran on (recorded in the cluster's state dir) and every
--ssh-host: kubeadm reset, kubelet and containerd stopped and disabled with the units and binaries
dhctl installed, the CNI's configuration, interfaces (cni0, flannel.1) and iptables rules,
/etc/kubernetes, /var/lib/etcd, /var/lib/kubelet, containerd's state and the bundle's own files.
All hosts are cleaned at once; a host that cannot be reached is reported and the others are
cleaned all the same. Afterwards the state dir forgets the cluster (checkpoints, join data,
kubeconfig), so a new bootstrap starts clean. Running it twice is harmless.

It asks for confirmation unless --yes-i-am-sane-and-i-understand-what-i-am-doing is given, and
refuses a cluster whose bootstrap finished unless --` + forceFinishedFlag + ` is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := openSession(cmd, opts, os.LookupEnv, false)
			if err != nil {
				return err
			}
			defer s.Close()
			log := s.Log()
			done, at, err := abort.Completed(s.State())
			if err != nil {
				return err
			}
			if done && !force {
				return usageError(fmt.Errorf("the bootstrap of cluster %s finished (%s, state dir %s): abort would destroy a cluster that may be in use; pass --%s if that is what you want",
					s.Name(), at.Format(time.RFC3339), s.State().Path(), forceFinishedFlag))
			}
			hosts, err := abortHosts(s.State(), s.Hosts())
			if err != nil {
				return err
			}
			if len(hosts) == 0 {
				return usageError(fmt.Errorf("no hosts to clean: the state dir %s records none for cluster %s; name them with --ssh-host (and --cluster-name for the cluster's state dir)",
					s.State().Path(), s.Name()))
			}
			if !opts.Sane {
				if err := confirmAbort(cmd.InOrStdin(), cmd.ErrOrStderr(), s.Name(), hosts); err != nil {
					return err
				}
			}
			script, err := abort.Script(candi.FS)
			if err != nil {
				return err
			}
			clients, err := s.Clients(hosts)
			if err != nil {
				return err
			}
			defer session.CloseClients(clients)
			start := time.Now()
			rep := abort.Clean(ctx, clients, script, abort.Options{Concurrency: concurrency, Log: log})
			if _, err := rep.WriteTo(cmd.OutOrStdout()); err != nil {
				return err
			}
			reset, err := abort.Forget(s.State(), rep.Cleaned(), rep.NotCleaned(), time.Now())
			if err != nil {
				return err
			}
			log.Info("abort finished", "hosts", len(hosts), "cleaned", len(rep.Cleaned()), "state_reset", reset, "took", time.Since(start).Round(10*time.Millisecond))
			if !rep.AllCleaned() {
				return fmt.Errorf("abort did not clean every host (the state dir still lists them; re-run abort once they are reachable): %w", rep.Err())
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, forceFinishedFlag, false, "abort even a cluster whose bootstrap finished (destroys a cluster that may be in use)")
	cmd.Flags().IntVar(&concurrency, "concurrency", ssh.DefaultConcurrency, "how many hosts are cleaned at once")
	return cmd
}

// abortHosts is every recorded host, then every --ssh-host not recorded, without duplicates.
func abortHosts(dir *state.Dir, flagHosts []string) ([]string, error) {
	recorded, err := abort.TouchedHosts(dir)
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
	for _, h := range flagHosts {
		if !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	return hosts, nil
}

// confirmAbort shows what is about to be removed and wants "yes" typed on in.
func confirmAbort(in io.Reader, out io.Writer, cluster string, hosts []string) error {
	fmt.Fprintf(out, "abort will REMOVE cluster %s from these hosts (kubeadm reset, kubelet, containerd with its images, CNI, /etc/kubernetes, /var/lib/etcd, /var/lib/kubelet):\n", cluster)
	for _, h := range hosts {
		fmt.Fprintf(out, "  %s\n", h)
	}
	fmt.Fprint(out, "Type yes to go on: ")
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if strings.TrimSpace(line) != "yes" {
		return exitcode.Aborted(errors.New("abort not confirmed: nothing was changed (answer yes, or pass --yes-i-am-sane-and-i-understand-what-i-am-doing when no one can answer)"))
	}
	return nil
}

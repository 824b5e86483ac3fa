package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/internal/kube"
)

// newLockCommand is `dhctl lock`: the converge lock (Lease d8-system/d8-converge-lock) that makes
// converges and destroys of a cluster exclusive.
func newLockCommand(opts *globalOptions) *cobra.Command {
	cmd := newGroupCommand("lock", "Show or release the cluster's converge lock")
	var kubeconfig string
	// connect reaches the API server: with --kubeconfig, or through the first master.
	connect := func(cmd *cobra.Command) (*kube.Client, func(), error) {
		if kubeconfig != "" {
			k, err := kube.FromKubeconfig(kubeconfig)
			if err != nil {
				return nil, nil, usageError(err)
			}
			return k, func() { k.Close() }, nil
		}
		s, err := openSession(cmd, opts, false)
		if err != nil {
			return nil, nil, err
		}
		k, err := apiThroughFirstMaster(s)(cmd.Context())
		if err != nil {
			s.Close()
			return nil, nil, fmt.Errorf("reaching the API server through the first master the state dir records (or give --kubeconfig): %w", err)
		}
		return k, func() { k.Close(); s.Close() }, nil
	}
	// open connects, reads the lock and shows it; done closes what it opened.
	open := func(cmd *cobra.Command) (*kube.Client, func(), *kube.LockInfo, error) {
		k, done, err := connect(cmd)
		if err != nil {
			return nil, nil, nil, err
		}
		info, err := kube.ReadLock(cmd.Context(), k.Typed())
		if err != nil {
			done()
			return nil, nil, nil, err
		}
		writeLock(cmd.OutOrStdout(), info, time.Now())
		return k, done, info, nil
	}
	show := &cobra.Command{
		Use:   "show",
		Short: "Show who holds the converge lock",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, done, _, err := open(cmd)
			if err == nil {
				done()
			}
			return err
		},
	}
	release := &cobra.Command{
		Use:   "release",
		Short: "Release a converge lock its holder left behind",
		Long: `Delete the converge lock (Lease d8-system/d8-converge-lock) after showing who holds it and
asking for "yes" (or --yes-i-am-sane-and-i-understand-what-i-am-doing). Only for a lock whose holder
died on another machine: a run of this machine that died is taken over by the next run at once,
and any lock is taken over once it expires. Releasing the lock of a run that is still working lets
another converge or destroy race it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, done, info, err := open(cmd)
			if err != nil {
				return err
			}
			defer done()
			if info == nil {
				return nil
			}
			if !opts.Sane {
				if err := confirm(cmd.InOrStdin(), cmd.ErrOrStderr(), "Release it only if that run is gone.", "lock release", "the lock is kept"); err != nil {
					return err
				}
			}
			// Only the holder shown: one that took the lock meanwhile keeps it.
			if err := kube.ReleaseLock(cmd.Context(), k.Typed(), info.Holder); err != nil {
				return fmt.Errorf("releasing the lock: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "lock released")
			return nil
		},
	}
	for _, c := range []*cobra.Command{show, release} {
		c.Flags().StringVar(&kubeconfig, "kubeconfig", "", "reach the API server directly with this kubeconfig instead of through SSH to the first master")
		cmd.AddCommand(c)
	}
	return cmd
}

func writeLock(w io.Writer, info *kube.LockInfo, now time.Time) {
	if info == nil {
		fmt.Fprintf(w, "no converge lock is held (no Lease %s/%s)\n", kube.LockNamespace, kube.LockName)
		return
	}
	state := "expires " + info.Expires.Format(time.RFC3339) + " (in " + info.Expires.Sub(now).Round(time.Second).String() + ")"
	if !now.Before(info.Expires) {
		state = "expired " + info.Expires.Format(time.RFC3339) + ": the next run takes it over"
	} else if info.Dead {
		state += "; its holder, a process of this machine, is gone: the next run takes it over"
	}
	fmt.Fprintf(w, "converge lock (Lease %s/%s) held by %s, renewed %s, %s\n", kube.LockNamespace, kube.LockName,
		info.Holder, info.Renewed.Format(time.RFC3339), state)
}

package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/internal/operations/sshcheck"
	"github.com/dhctl-dev/dhctl/internal/session"
)

func newTestCommand(opts *globalOptions) *cobra.Command {
	cmd := newGroupCommand("test", "Check that dhctl can reach and use the machines")
	cmd.AddCommand(&cobra.Command{
		Use:   "ssh-connection",
		Short: "Connect to every --ssh-host and report its OS, kernel, sudo mode and host key status",
		Long: `Connect to every host (--ssh-host, or SSHHost documents from --connection-config), through
the bastion when one is given, verify or pin its host key in the state dir, and print per host the
OS, the kernel, how sudo works and whether the host key was newly pinned.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := openSession(cmd, opts, false)
			if err != nil {
				return err
			}
			defer s.Close()
			hosts := s.Hosts()
			if len(hosts) == 0 {
				return usageError(errors.New("no hosts to check: pass --ssh-host (repeatable) or SSHHost documents with --connection-config"))
			}
			clients, err := s.Clients(hosts)
			if err != nil {
				return err
			}
			defer session.CloseClients(clients)
			_, err = sshcheck.CheckClients(cmd.Context(), clients, sshcheck.FanoutOptions{}, cmd.OutOrStdout())
			return err
		},
	})
	return cmd
}

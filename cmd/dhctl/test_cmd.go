package main

import (
	"github.com/spf13/cobra"
)

func newTestCommand(opts *globalOptions) *cobra.Command {
	cmd := newGroupCommand("test", "Check that dhctl can reach and use the machines")
	cmd.AddCommand(&cobra.Command{
		Use:   "ssh-connection",
		Short: "Connect to every --ssh-host and report its OS, kernel, sudo mode and host key status",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return notAvailable("dhctl test ssh-connection", "the SSH transport issue (#3)")
		},
	})
	_ = opts
	return cmd
}

package main

import (
	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/internal/session"
)

// dhctl bootstrap (issue #7): the whole operation, resumable.

func newBootstrapCommand(_ *globalOptions) *cobra.Command {
	var phases session.PhaseOptions
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Create a cluster: infrastructure, first master, CNI, platform, nodes and resources",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return notAvailable("dhctl bootstrap", "the end-to-end bootstrap issue (#7)")
		},
	}
	addPhaseFlags(cmd.Flags(), &phases)
	return cmd
}

package main

import (
	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/internal/operations/bootstrap"
)

// newBootstrapPhaseGroup is `dhctl bootstrap-phase`: a command per part of the bootstrap's phase
// tree it is bound to (bootstrap.Commands), plus abort.
func newBootstrapPhaseGroup(opts *globalOptions) *cobra.Command {
	cmd := newGroupCommand("bootstrap-phase", "Run one phase of the bootstrap on its own")
	for _, c := range bootstrap.Commands() {
		cmd.AddCommand(newBootstrapPhaseCommand(opts, c))
	}
	cmd.AddCommand(newAbortPhaseCommand(opts))
	return cmd
}

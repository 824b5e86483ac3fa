package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/internal/operations/bootstrap"
)

// notAvailable is the answer of a command whose capability has not landed yet: it says so and
// exits 2, rather than pretending to succeed.
func notAvailable(what, comesWith string) error {
	return usageError(fmt.Errorf("%s is not available in this build yet: it comes with %s", what, comesWith))
}

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

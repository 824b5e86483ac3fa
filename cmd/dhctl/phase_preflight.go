package main

import "github.com/spf13/cobra"

// The preflight phase (issue #7): named, skippable checks reported all at once.

func newPreflightPhaseCommand(_ *globalOptions) *cobra.Command {
	return notAvailableCommand("preflight", "Run the preflight checks against the machines",
		"dhctl bootstrap-phase preflight", "the end-to-end bootstrap issue (#7)")
}

package main

import "github.com/spf13/cobra"

// dhctl bootstrap-phase abort (issue #7): remove what a failed bootstrap made.

func newAbortPhaseCommand(_ *globalOptions) *cobra.Command {
	return notAvailableCommand("abort", "Remove what a failed bootstrap made",
		"dhctl bootstrap-phase abort", "the end-to-end bootstrap issue (#7)")
}

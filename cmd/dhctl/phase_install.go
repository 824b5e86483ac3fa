package main

import "github.com/spf13/cobra"

// Commands of the install phase (issue #6): CNI, platform controller, cluster state, resources.

func newInstallDeckhousePhaseCommand(_ *globalOptions) *cobra.Command {
	return notAvailableCommand("install-deckhouse", "Install the CNI, the platform controller and the cluster state",
		"dhctl bootstrap-phase install-deckhouse", "the install issue (#6)")
}

func newCreateResourcesPhaseCommand(_ *globalOptions) *cobra.Command {
	return notAvailableCommand("create-resources", "Create the resources from --resources",
		"dhctl bootstrap-phase create-resources", "the install issue (#6)")
}

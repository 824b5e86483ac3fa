package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// notAvailable is the answer of a command whose capability has not landed yet: it says so and
// exits 2, rather than pretending to succeed.
func notAvailable(what, comesWith string) error {
	return usageError(fmt.Errorf("%s is not available in this build yet: it comes with %s", what, comesWith))
}

func newBootstrapCommand(_ *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "bootstrap",
		Short: "Create a cluster: infrastructure, first master, CNI, platform, nodes and resources",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return notAvailable("dhctl bootstrap", "the end-to-end bootstrap issue (#7)")
		},
	}
}

// bootstrapPhases are the phases of `dhctl bootstrap`, each runnable alone, in their order.
func bootstrapPhases() []struct{ name, short, issue string } {
	return []struct{ name, short, issue string }{
		{"preflight", "Run the preflight checks against the machines", "#7"},
		{"base-infra", "Create the base infrastructure of a cloud cluster (Terraform)", "the cloud provider issues"},
		{"execute-bashible-bundle", "Prepare the first master: packages, containerd, kubelet, kubeadm init", "the node bootstrap issue (#5)"},
		{"install-deckhouse", "Install the CNI, the platform controller and the cluster state", "the install issue (#6)"},
		{"create-resources", "Create the resources from --resources", "the install issue (#6)"},
		{"abort", "Remove what a failed bootstrap made", "#7"},
	}
}

func newBootstrapPhaseCommand(_ *globalOptions) *cobra.Command {
	cmd := newGroupCommand("bootstrap-phase", "Run one phase of the bootstrap on its own")
	for _, p := range bootstrapPhases() {
		cmd.AddCommand(&cobra.Command{
			Use:   p.name,
			Short: p.short,
			Args:  cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error {
				return notAvailable("dhctl bootstrap-phase "+p.name, p.issue)
			},
		})
	}
	return cmd
}

func newConvergeCommand(_ *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "converge",
		Short: "Bring the cluster's infrastructure and node groups to the configured state",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return notAvailable("dhctl converge", "the converge issue")
		},
	}
}

func newDestroyCommand(_ *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "destroy",
		Short: "Destroy the cluster and everything dhctl made for it",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return notAvailable("dhctl destroy", "the destroy issue")
		},
	}
}

func newMirrorCommand(_ *globalOptions) *cobra.Command {
	cmd := newGroupCommand("mirror", "Copy every image and package a cluster needs into a bundle or a private registry")
	for _, sub := range []struct{ use, short string }{
		{"pull", "Download images and packages into a local bundle"},
		{"push", "Upload a bundle into a private registry"},
	} {
		cmd.AddCommand(&cobra.Command{
			Use:   sub.use,
			Short: sub.short,
			Args:  cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error {
				return notAvailable("dhctl mirror "+sub.use, "the mirror issue")
			},
		})
	}
	return cmd
}

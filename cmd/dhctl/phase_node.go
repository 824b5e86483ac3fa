package main

import "github.com/spf13/cobra"

// Commands of the node bootstrap (issue #5): the bundle that turns a host into a control plane
// or a worker, and what it would ship.

func newExecuteBashibleBundlePhaseCommand(_ *globalOptions) *cobra.Command {
	return notAvailableCommand("execute-bashible-bundle", "Prepare the first master: packages, containerd, kubelet, kubeadm init",
		"dhctl bootstrap-phase execute-bashible-bundle", "the node bootstrap issue (#5)")
}

func newRenderKubeadmConfigCommand(_ *globalOptions) *cobra.Command {
	return notAvailableCommand("kubeadm-config", "Print the kubeadm configuration the first master gets",
		"dhctl config render kubeadm-config", "the node bootstrap issue (#5)")
}

func newRenderBashibleBundleCommand(_ *globalOptions) *cobra.Command {
	return notAvailableCommand("bashible-bundle", "Print the node bundle for one host",
		"dhctl config render bashible-bundle", "the node bootstrap issue (#5)")
}

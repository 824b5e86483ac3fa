package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/operations/configedit"
)

func newConfigCommand(opts *globalOptions) *cobra.Command {
	cmd := newGroupCommand("config", "Validate and render configuration")
	cmd.AddCommand(&cobra.Command{
		Use:   "validate",
		Short: "Validate the --config, --resources and --connection-config documents",
		Long: `Validate every document against its schema, apply defaults and check the cross-field rules.
Prints "valid", or every problem found with its file, document, field path and line (exit code 2).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := loadConfig(cmd, opts, true); err != nil {
				return err
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "valid")
			return err
		},
	})

	cmd.AddCommand(newConfigEditCommand(opts))

	render := newGroupCommand("render", "Print what dhctl would use or ship")
	render.AddCommand(&cobra.Command{
		Use:   "defaults",
		Short: "Print the configuration documents with every default applied",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cluster, err := loadConfig(cmd, opts, true)
			if err != nil {
				return err
			}
			out, err := cluster.RenderDefaults()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	})
	render.AddCommand(newRenderKubeadmConfigCommand(opts), newRenderBashibleBundleCommand(opts), newRenderPlatformCommand(opts))
	cmd.AddCommand(render)
	return cmd
}

// loadConfig reads every configuration document named on the command line. Invalid input is a
// usage error (exit 2) listing every problem, not only the first.
func loadConfig(cmd *cobra.Command, opts *globalOptions, required bool, require ...config.Requirement) (*config.Cluster, error) {
	if required && len(opts.ConfigPaths) == 0 {
		return nil, usageError(errors.New("no configuration given: pass --config <file> (repeatable) or set DHCTL_CONFIG"))
	}
	cluster, err := config.Load(cmd.Context(), config.LoadOptions{
		ConfigPaths:           opts.ConfigPaths,
		ResourcePaths:         opts.ResourcePaths,
		ConnectionConfigPaths: opts.ConnectionConfigPaths,
		LookupEnv:             opts.lookupEnv,
		Require:               require,
	})
	var problems config.Problems
	if errors.As(err, &problems) {
		lines := make([]string, len(problems))
		for i, p := range problems {
			lines[i] = "  - " + p.Error()
		}
		noun := "problems"
		if len(problems) == 1 {
			noun = "problem"
		}
		return nil, usageError(fmt.Errorf("the configuration has %d %s:\n%s", len(problems), noun, strings.Join(lines, "\n")))
	}
	if err != nil {
		return nil, err
	}
	return cluster, nil
}

// newConfigEditCommand is `dhctl config edit <document>`: a configuration document the cluster
// keeps, opened in $VISUAL or $EDITOR (vi), saved only when valid.
func newConfigEditCommand(opts *globalOptions) *cobra.Command {
	var kubeconfig string
	cmd := &cobra.Command{
		Use:       "edit " + strings.Join(configedit.Documents(), "|"),
		Short:     "Edit a configuration document the cluster keeps, validated before it is saved",
		ValidArgs: configedit.Documents(),
		Long: `Open one of the configuration documents the cluster keeps (Secrets kube-system/d8-cluster-configuration,
d8-provider-cluster-configuration, d8-static-cluster-configuration) in $VISUAL or $EDITOR (else vi).
When the editor exits, the document is checked with the same schemas and rules as --config; it is
saved only when valid and when it changes nothing the running cluster was made with (clusterType,
the pod and service subnets, the cluster domain, the Kubernetes version). An invalid edit is kept
in a 0600 file whose path is printed, and nothing is saved. The converge lock is held meanwhile,
and an edit never overwrites a change saved since it was read. The cluster is reached with
--kubeconfig or through the first master the state dir records. dhctl converge then acts on it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := configedit.Options{Document: args[0], Out: cmd.OutOrStdout()}
			o.Edit = func(path string) error {
				editor, _ := opts.lookupEnv("VISUAL")
				if editor == "" {
					editor, _ = opts.lookupEnv("EDITOR")
				}
				if editor == "" {
					editor = "vi"
				}
				// As git does: the variable may carry arguments ("code --wait").
				e := exec.CommandContext(cmd.Context(), "/bin/sh", "-c", editor+` "$1"`, editor, path)
				e.Stdin, e.Stdout, e.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
				return e.Run()
			}
			if kubeconfig != "" {
				o.Kube = func(context.Context) (*kube.Client, error) {
					k, err := kube.FromKubeconfig(kubeconfig)
					if err != nil {
						return nil, usageError(err)
					}
					return k, nil
				}
				return configedit.Run(cmd.Context(), o)
			}
			s, err := openSession(cmd, opts, false)
			if err != nil {
				return err
			}
			defer s.Close()
			o.Kube = apiThroughFirstMaster(s)
			return configedit.Run(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "reach the API server with this kubeconfig instead of through the first master")
	return cmd
}

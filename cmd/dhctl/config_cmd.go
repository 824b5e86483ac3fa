package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/internal/config"
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

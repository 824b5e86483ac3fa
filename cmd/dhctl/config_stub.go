package main

import "github.com/spf13/cobra"

// Temporary until internal/config lands (config_cmd.go.pending replaces this file).
func newConfigCommand(opts *globalOptions, lookupEnv func(string) (string, bool)) *cobra.Command {
	return &cobra.Command{Use: "config"}
}

package main

import (
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/infra"
)

// Stamped at link time by `make build` and `make release` (-X main.version=... -X main.commit=...
// -X main.date=...); a plain `go build` reports what Go recorded, or "devel".
var (
	version = ""
	commit  = ""
	date    = ""
)

func newVersionCommand() *cobra.Command {
	var f engineFlags
	var verbose bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the dhctl version, the supported Kubernetes versions and the infrastructure engine found",
		Long: `Print the dhctl version (with its commit and build date), the Kubernetes versions it installs and
the infrastructure engine it would use. --verbose adds where the engine and the provider plugins
were found (flag, environment, beside dhctl, PATH), the providers the plugin directory holds, and
the provider releases this build pins for mirror pull.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			c, d := buildCommit()
			fmt.Fprintf(w, "dhctl %s (commit %s, built %s, %s, %s/%s)\n", buildVersion(), c, d, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			vm, err := config.LoadVersionMap(candi.FS)
			if err == nil {
				fmt.Fprintf(w, "kubernetes: %s (default %s)\n", strings.Join(vm.Supported(), ", "), vm.Default())
			}
			// The engine is needed for cloud clusters only: not finding one is information here.
			if eng, err := infra.Find(cmd.Context(), infra.FindOptions{Binary: f.Binary, ExeDir: exeDir()}); err == nil {
				fmt.Fprintf(w, "infrastructure engine: %s\n", eng)
			} else {
				fmt.Fprintf(w, "infrastructure engine: none usable (%v)\n", err)
			}
			if verbose {
				printPlugins(w, cmd, f.PluginsDir, vm)
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "also say where the provider plugins are and what they hold")
	return cmd
}

// printPlugins reports the provider plugin directory dhctl would use and what it holds.
func printPlugins(w io.Writer, cmd *cobra.Command, flag string, vm *config.VersionMap) {
	dir, from := flag, "--terraform-plugins-dir"
	if fl := cmd.Flags().Lookup("terraform-plugins-dir"); fl != nil {
		from = flagOrigin(fl)
	}
	if dir == "" {
		if d := exeDir(); d != "" {
			dir, from = filepath.Join(d, "plugins"), "beside dhctl"
		}
	}
	if dir == "" {
		fmt.Fprintln(w, "provider plugins: none (give --terraform-plugins-dir)")
	} else if list, err := infra.ListMirror(dir); err != nil {
		fmt.Fprintf(w, "provider plugins: %s (%s): not readable: %v\n", dir, from, err)
	} else if len(list) == 0 {
		fmt.Fprintf(w, "provider plugins: %s (%s): holds no provider\n", dir, from)
	} else {
		fmt.Fprintf(w, "provider plugins: %s (%s):\n", dir, from)
		for _, p := range list {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
	fmt.Fprintln(w, "engine CLI configuration: written by dhctl for each run (providers from the plugins directory only, no registry)")
	if vm != nil && len(vm.TerraformProviders) > 0 {
		var pins []string
		for src, p := range vm.TerraformProviders {
			pins = append(pins, src+" "+p.Version)
		}
		sort.Strings(pins)
		fmt.Fprintf(w, "provider releases mirror pull carries: %s\n", strings.Join(pins, ", "))
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "devel"
}

// buildCommit is the commit and date stamped at link time, else the VCS facts Go recorded.
func buildCommit() (string, string) {
	c, d := commit, date
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision" && c == "":
				c = s.Value
			case s.Key == "vcs.time" && d == "":
				d = s.Value
			}
		}
	}
	if len(c) > 12 {
		c = c[:12]
	}
	if c == "" {
		c = "unknown"
	}
	if d == "" {
		d = "unknown"
	}
	return c, d
}

package main

import (
	"strings"

	"fmt"
	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/infra"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at link time by `make build` (-X main.version=...); a plain `go build` reports the
// module version Go recorded, or "devel".
var version = ""

func newVersionCommand() *cobra.Command {
	var f engineFlags
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the dhctl version, the supported Kubernetes versions and the infrastructure engine found",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "dhctl %s (%s, %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			if vm, err := config.LoadVersionMap(candi.FS); err == nil {
				fmt.Fprintf(w, "kubernetes: %s (default %s)\n", strings.Join(vm.Supported(), ", "), vm.Default())
			}
			// The engine is needed for cloud clusters only: not finding one is information here.
			if eng, err := infra.Find(cmd.Context(), infra.FindOptions{Binary: f.Binary, ExeDir: exeDir()}); err == nil {
				fmt.Fprintf(w, "infrastructure engine: %s\n", eng)
			} else {
				fmt.Fprintf(w, "infrastructure engine: none usable (%v)\n", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&f.Binary, "terraform-binary", "", "the OpenTofu or Terraform binary to report on")
	return cmd
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

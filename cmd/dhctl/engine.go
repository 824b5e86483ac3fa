package main

import (
	"context"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/infra"
	"github.com/dhctl-dev/dhctl/internal/session"
	"github.com/dhctl-dev/dhctl/providers"
	"github.com/dhctl-dev/dhctl/providers/vsphere"
)

// engineFlags choose the infrastructure engine and its provider plugins (cloud clusters only).
type engineFlags struct {
	Binary     string
	PluginsDir string
}

func (f *engineFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.Binary, "terraform-binary", "", "the OpenTofu (tofu) or Terraform binary for a cloud cluster (default: beside dhctl, else tofu or terraform on PATH)")
	cmd.Flags().StringVar(&f.PluginsDir, "terraform-plugins-dir", "", "the provider plugin mirror (<host>/<namespace>/<name>/<version>/<os>_<arch>/; default: plugins/ beside dhctl)")
}

// providerRegistry is every cloud this build knows, by cloud.provider value.
func providerRegistry() providers.Registry {
	return providers.Registry{vsphere.Name: vsphere.New}
}

// exeDir is the directory of the running dhctl ("" when unknown): an installer image or a
// release archive ships the engine and the plugins beside it.
func exeDir() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	return filepath.Dir(exe)
}

// cloud is the provider and the engine's runner of a Cloud cluster configured by c; nil, nil
// for a static one.
func (f *engineFlags) cloud(ctx context.Context, s *session.Session, c *config.Cluster) (providers.Provider, *infra.Runner, error) {
	prov, err := providerRegistry().For(c)
	if err != nil || prov == nil {
		if err != nil {
			return nil, nil, usageError(err)
		}
		return nil, nil, nil
	}
	eng, err := infra.Find(ctx, infra.FindOptions{Binary: f.Binary, ExeDir: exeDir()})
	if err != nil {
		return nil, nil, usageError(err)
	}
	plugins := f.PluginsDir
	if plugins == "" {
		if d := exeDir(); d != "" {
			plugins = filepath.Join(d, "plugins")
		}
	}
	s.Log().Info("infrastructure engine", "engine", eng.String(), "plugins", plugins)
	runner, err := infra.NewRunner(infra.Options{Engine: eng, PluginDir: plugins, Sources: prov.Sources(),
		WorkRoot: s.ClusterState().TerraformWorkRoot(), States: s.ClusterState(), Log: s.Log()})
	if err != nil {
		return nil, nil, usageError(err)
	}
	return prov, runner, nil
}

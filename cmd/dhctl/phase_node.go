package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/inventory"
	"github.com/dhctl-dev/dhctl/internal/kubeadm"
	"github.com/dhctl-dev/dhctl/internal/node"
	"github.com/dhctl-dev/dhctl/internal/nodebundle"
)

// What the node bundle would ship (config render kubeadm-config, bashible-bundle); the bundle
// itself runs in the bootstrap's phases (bootstrap-phase execute-bashible-bundle).

// nodeFlags are the flags of the node commands.
type nodeFlags struct {
	NodeIP           string
	NodeName         string
	Role             string
	OSFamily         string
	ControlPlaneHost string
	VersionMapFile   string
	PackagesSource   string
}

func (f *nodeFlags) addVersionMap(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.VersionMapFile, "version-map-override", "",
		"TEST/AIR-GAP OVERRIDE of candi/version_map.yml entries (a partial version map: patch, images, packages with their sha256); dhctl says loudly that it uses one")
}

// versionMap is the built-in version map with the override applied.
func (f *nodeFlags) versionMap(ctx context.Context, w io.Writer) (*config.VersionMap, error) {
	vm, err := config.LoadVersionMap(candi.FS)
	if err != nil {
		return nil, err
	}
	if f.VersionMapFile == "" {
		return vm, nil
	}
	data, err := config.ReadFile(ctx, f.VersionMapFile, maxVersionMapSize)
	if err != nil {
		return nil, usageError(fmt.Errorf("--version-map-override: %w", err))
	}
	o, err := config.ParseVersionMapOverride(data)
	if err != nil {
		return nil, usageError(fmt.Errorf("--version-map-override %s: %w", f.VersionMapFile, err))
	}
	fmt.Fprintf(w, "WARNING: using a TEST/AIR-GAP OVERRIDE of the version map from %s: its entries replace the built-in (upstream-verified) ones\n", f.VersionMapFile)
	return vm.WithOverride(o), nil
}

func parseRole(s string) (inventory.Role, error) {
	r, err := inventory.ParseRole(s)
	if err != nil {
		return "", usageError(fmt.Errorf("--role: %w", err))
	}
	return r, nil
}

func newRenderKubeadmConfigCommand(opts *globalOptions) *cobra.Command {
	var f nodeFlags
	cmd := &cobra.Command{
		Use:   "kubeadm-config",
		Short: "Print the kubeadm configuration the first master gets",
		Long: `Print the kubeadm documents (InitConfiguration, ClusterConfiguration, KubeletConfiguration,
KubeProxyConfiguration) of the first control-plane node, as the bundle ships them. The bootstrap
token and certificate key are made per bootstrap and shown as <redacted>.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.NodeIP == "" {
				return usageError(errors.New("--node-ip is required: the first master's address"))
			}
			cluster, err := loadConfig(cmd, opts, true)
			if err != nil {
				return err
			}
			vm, err := f.versionMap(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			kc, err := kubeadm.FromConfig(cluster, vm, f.NodeIP)
			if err != nil {
				return usageError(err)
			}
			kc.CgroupDriver = "systemd"
			secrets, err := kubeadm.NewSecrets()
			if err != nil {
				return err
			}
			out, err := kubeadm.Init(kc, kubeadm.Node{Name: f.NodeName, IP: f.NodeIP}, secrets)
			if err != nil {
				return usageError(err)
			}
			text := strings.NewReplacer(secrets.Token, "<redacted>", secrets.CertificateKey, "<redacted>").Replace(string(out))
			_, err = io.WriteString(cmd.OutOrStdout(), text)
			return err
		},
	}
	cmd.Flags().StringVar(&f.NodeIP, "node-ip", "", "the first master's address (required)")
	cmd.Flags().StringVar(&f.NodeName, "node-name", "", "the node name (default: the host name kubeadm finds)")
	f.addVersionMap(cmd)
	return cmd
}

func newRenderBashibleBundleCommand(opts *globalOptions) *cobra.Command {
	var f nodeFlags
	cmd := &cobra.Command{
		Use:   "bashible-bundle",
		Short: "Print the node bundle for one host",
		Long: `Print every file of the bundle one host gets (driver and steps, with their paths and modes),
exactly as shipped, with secrets (registry password, bootstrap token, certificate key, proxy
credentials) shown as <redacted>. A master is the first one (kubeadm init) when --node-ip is the
--control-plane-host (the default); others join.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.NodeIP == "" {
				return usageError(errors.New("--node-ip is required"))
			}
			role, err := parseRole(f.Role)
			if err != nil {
				return err
			}
			fam := node.OSFamily(f.OSFamily)
			if fam != node.Debian && fam != node.RHEL {
				return usageError(fmt.Errorf("--os-family %q: want debian (Debian, Ubuntu) or rhel (Rocky, Alma, CentOS Stream)", f.OSFamily))
			}
			cluster, err := loadConfig(cmd, opts, true)
			if err != nil {
				return err
			}
			vm, err := f.versionMap(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			cp := f.ControlPlaneHost
			if cp == "" {
				cp = f.NodeIP
			}
			plan, err := nodebundle.NewPlan(candi.FS, cluster, vm, cp)
			if err != nil {
				return usageError(err)
			}
			secrets, err := kubeadm.NewSecrets()
			if err != nil {
				return err
			}
			init := role == inventory.Master && cp == f.NodeIP
			join := kubeadm.JoinInfo{APIServerEndpoint: plan.Kubeadm.ControlPlaneEndpoint, Token: secrets.Token,
				CACertHash: "sha256:" + strings.Repeat("0", 64), CertificateKey: secrets.CertificateKey}
			_, d, err := plan.Render(nodebundle.Target{IP: f.NodeIP, Role: role, Init: init,
				Host: node.Host{Family: fam, Hostname: f.NodeName, CgroupDriver: "systemd"}}, secrets, join)
			if err != nil {
				return usageError(err)
			}
			// The same data with its secrets replaced: what is shipped, minus what must not be shown.
			b, err := node.Render(candi.FS, d.Redacted(secrets.Token, secrets.CertificateKey))
			if err != nil {
				return err
			}
			_, err = b.WriteTo(cmd.OutOrStdout())
			return err
		},
	}
	cmd.Flags().StringVar(&f.NodeIP, "node-ip", "", "the node's address (required)")
	cmd.Flags().StringVar(&f.NodeName, "node-name", "", "the node name (default: the host name kubeadm finds)")
	cmd.Flags().StringVar(&f.Role, "role", "master", "master or worker")
	cmd.Flags().StringVar(&f.OSFamily, "os-family", "debian", "bundle: debian (Debian, Ubuntu) or rhel (Rocky, Alma, CentOS Stream)")
	cmd.Flags().StringVar(&f.ControlPlaneHost, "control-plane-host", "", "the first master's address (default: --node-ip)")
	f.addVersionMap(cmd)
	return cmd
}

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/kubeadm"
	"github.com/dhctl-dev/dhctl/internal/node"
	"github.com/dhctl-dev/dhctl/internal/operations/abort"
	"github.com/dhctl-dev/dhctl/internal/operations/nodebundle"
)

// Commands of the node bootstrap (issue #5): the bundle that turns a host into a control plane
// or a worker, and what it would ship.

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

func (f *nodeFlags) addNode(cmd *cobra.Command, roleDefault string) {
	cmd.Flags().StringVar(&f.NodeIP, "node-ip", "", "the node's address other nodes reach it at (default: the SSH host when it is an IP)")
	cmd.Flags().StringVar(&f.Role, "role", roleDefault, "what the node becomes: master or worker")
}

// versionMap is the built-in version map with the override applied.
func (f *nodeFlags) versionMap(w io.Writer) (*config.VersionMap, error) {
	vm, err := config.LoadVersionMap(candi.FS)
	if err != nil {
		return nil, err
	}
	if f.VersionMapFile == "" {
		return vm, nil
	}
	data, err := os.ReadFile(f.VersionMapFile)
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

func parseRole(s string) (node.Role, error) {
	switch r := node.Role(s); r {
	case node.RoleMaster, node.RoleWorker:
		return r, nil
	}
	return "", usageError(fmt.Errorf("--role %q: want master or worker", s))
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
			cluster, err := loadConfig(cmd, opts, opts.lookupEnv, true)
			if err != nil {
				return err
			}
			vm, err := f.versionMap(cmd.ErrOrStderr())
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
			cluster, err := loadConfig(cmd, opts, opts.lookupEnv, true)
			if err != nil {
				return err
			}
			vm, err := f.versionMap(cmd.ErrOrStderr())
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
			init := role == node.RoleMaster && cp == f.NodeIP
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

// joinState is what the first master's run leaves in the state dir for the nodes joining later.
type joinState struct {
	MasterIP string           `json:"masterIP"`
	Join     kubeadm.JoinInfo `json:"join"`
	Secrets  kubeadm.Secrets  `json:"secrets"`
}

const (
	joinStateFile  = "node/join.json" // secret: the bootstrap token and certificate key
	kubeconfigFile = "kubeconfig"     // secret: the admin kubeconfig
)

func newExecuteBashibleBundlePhaseCommand(opts *globalOptions) *cobra.Command {
	var f nodeFlags
	cmd := &cobra.Command{
		Use:   "execute-bashible-bundle",
		Short: "Prepare a node: packages, containerd, kubelet, then kubeadm init (first master) or join",
		Long: `Render the bundle for the host given with --ssh-host (one host), ship it over SSH and run its
steps: checks, base settings, packages (through dhctl's packages endpoint, every sha256 checked),
containerd, kubelet, then kubeadm init on the first master or kubeadm join on the others. Steps
that did not change since they last succeeded are skipped, so a re-run is quick and safe.

The first master's run keeps the join data (token, CA hash) and the admin kubeconfig in the state
dir (0600); later runs with --role worker (or master, for another control-plane node) use them:
give every node's run the same --cluster-name (the default derives it from the first --ssh-host).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			role, err := parseRole(f.Role)
			if err != nil {
				return err
			}
			if f.PackagesSource != "registry" && f.PackagesSource != "upstream" {
				return usageError(fmt.Errorf("--packages-source %q: want registry or upstream", f.PackagesSource))
			}
			s, err := openSession(cmd, opts, opts.lookupEnv, true)
			if err != nil {
				return err
			}
			defer s.Close()
			log := s.Log()
			hosts := s.Hosts()
			if len(hosts) != 1 {
				return usageError(fmt.Errorf("give exactly one --ssh-host (got %d): the bundle runs on one node at a time", len(hosts)))
			}
			ip := f.NodeIP
			if ip == "" {
				h, _, err := net.SplitHostPort(hosts[0])
				if err != nil {
					h = hosts[0]
				}
				if net.ParseIP(h) == nil {
					return usageError(fmt.Errorf("--node-ip is required: the SSH host %q is not an IP address", hosts[0]))
				}
				ip = h
			}
			vm, err := f.versionMap(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			var st joinState
			if data, err := s.State().ReadFile(joinStateFile); err == nil {
				if err := json.Unmarshal(data, &st); err != nil {
					return fmt.Errorf("state %s: %w", joinStateFile, err)
				}
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("state %s: %w", joinStateFile, err)
			}
			init := role == node.RoleMaster && (st.MasterIP == "" || st.MasterIP == ip)
			if !init && st.MasterIP == "" {
				return usageError(errors.New("no first master in this cluster's state dir yet: run this command for the first master (--role master) first"))
			}
			cp := st.MasterIP
			if init {
				cp = ip
			}
			plan, err := nodebundle.NewPlan(candi.FS, s.Config(), vm, cp)
			if err != nil {
				return usageError(err)
			}
			srv, addr, err := plan.StartPackages(nodebundle.PackagesOptions{Upstream: f.PackagesSource == "upstream",
				CacheDir: filepath.Join(s.State().Path(), "packages"), Log: log})
			if err != nil {
				return err
			}
			defer srv.Close()
			// Recorded before anything runs there, so that abort knows to clean this host.
			if err := abort.RecordHost(s.State(), hosts[0], string(role), time.Now()); err != nil {
				return err
			}
			client, err := s.Connect(cmd.Context(), hosts[0])
			if err != nil {
				return err
			}
			defer client.Close()
			start := time.Now()
			exec := node.ExecOptions{PackagesAddr: addr, Log: log}
			var rep node.Report
			if init {
				secrets := st.Secrets
				if secrets.Token == "" {
					if secrets, err = kubeadm.NewSecrets(); err != nil {
						return err
					}
				}
				// Keep the secrets before running, so a re-run after a failure reuses them.
				if err := saveJSON(s.State().WriteFile, joinStateFile, joinState{MasterIP: ip, Secrets: secrets, Join: st.Join}); err != nil {
					return err
				}
				res, err := plan.BootstrapFirstMaster(cmd.Context(), client, ip, secrets, exec)
				rep = res.Report
				if err != nil {
					return err
				}
				if err := saveJSON(s.State().WriteFile, joinStateFile, joinState{MasterIP: ip, Secrets: secrets, Join: res.Join}); err != nil {
					return err
				}
				if err := s.State().WriteFile(kubeconfigFile, res.Kubeconfig); err != nil {
					return err
				}
				log.Info("admin kubeconfig saved", "path", filepath.Join(s.State().Path(), kubeconfigFile))
			} else {
				if rep, err = plan.Join(cmd.Context(), client, ip, role, st.Join, exec); err != nil {
					return err
				}
			}
			log.Info("node bundle finished", "host", hosts[0], "role", role, "steps_run", len(rep.Ran()), "steps_skipped", len(rep.Steps)-len(rep.Ran()), "took", time.Since(start).Round(10*time.Millisecond))
			return nil
		},
	}
	f.addNode(cmd, "master")
	f.addVersionMap(cmd)
	cmd.Flags().StringVar(&f.PackagesSource, "packages-source", "registry", "where the packages endpoint takes node packages from: registry (imagesRepo/packages, by digest) or upstream (the version map's URLs)")
	return cmd
}

func saveJSON(write func(string, []byte) error, name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return write(name, data)
}

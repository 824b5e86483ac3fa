// Package lab is a cluster-to-be on the e2e rig: machines, the registry with the offline
// artifacts, the configuration a user would write for them, the rig's version-map override,
// known_hosts, and the real dhctl binary run inside the rig's network namespace exactly as a user
// runs it. Every e2e test of dhctl and `make demo` set up through it.
package lab

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/dhctl-dev/dhctl/e2e/artifacts"
	"github.com/dhctl-dev/dhctl/e2e/images"
	"github.com/dhctl-dev/dhctl/e2e/rig"
)

// The configuration templates, filled with ConfigData. A test picks the documents it needs
// (Options.Config) and may append its own.
const (
	// StaticCluster is a Static cluster on the rig's network, pulling from the rig's registry.
	StaticCluster = `apiVersion: deckhouse.io/v1
kind: ClusterConfiguration
clusterType: Static
` + ClusterSettings + Init + `---
apiVersion: deckhouse.io/v1
kind: StaticClusterConfiguration
internalNetworkCIDRs:
- {{.Prefix}}
`
	// ClusterSettings are the ClusterConfiguration fields of every lab cluster besides its type:
	// the subnets, the Kubernetes version, the cluster domain and the CRI.
	ClusterSettings = `podSubnetCIDR: 10.111.0.0/16
podSubnetNodeCIDRPrefix: "25"
serviceSubnetCIDR: 10.222.0.0/16
kubernetesVersion: Automatic
clusterDomain: cluster.local
defaultCRI: Containerd
`
	// Init is the InitConfiguration of every lab cluster: the rig's registry, its CA and
	// credentials.
	Init = `---
apiVersion: deckhouse.io/v1
kind: InitConfiguration
deckhouse:
  imagesRepo: {{.ImagesRepo}}
  registryDockerCfg: {{.DockerCfg}}
  registryScheme: HTTPS
  registryCA: |
{{.RegistryCA}}
`
	// Platform is what the install phase applies beyond the control plane: the workers'
	// NodeGroup, the CNI's ModuleConfig and the platform's own (its release channel is set only
	// once the platform is ready).
	Platform = `---
apiVersion: deckhouse.io/v1
kind: NodeGroup
metadata:
  name: worker
spec:
  nodeType: Static
  nodeTemplate:
    labels:
      dhctl.test/tier: edge
    taints:
    - {key: dhctl.test/edge, value: "true", effect: PreferNoSchedule}
` + CNI + DeckhouseModuleConfig
	// DeckhouseModuleConfig configures the platform itself.
	DeckhouseModuleConfig = `---
apiVersion: deckhouse.io/v1alpha1
kind: ModuleConfig
metadata:
  name: deckhouse
spec:
  version: 1
  settings:
    bundle: Minimal
    releaseChannel: Stable
`
	// CNI is the CNI's ModuleConfig alone (a cloud cluster's worker group is the provider's).
	CNI = `---
apiVersion: deckhouse.io/v1alpha1
kind: ModuleConfig
metadata:
  name: cni-flannel
spec:
  enabled: true
  version: 1
  settings:
    podNetworkMode: VXLAN
`
	// KubeProxy leaves nf_conntrack_max alone: a rig machine cannot set it.
	KubeProxy = `---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
conntrack:
  maxPerCore: 0
`
	// FullConfig is what a user bootstrapping a whole cluster on the rig writes.
	FullConfig = StaticCluster + Platform + KubeProxy
)

// ConfigData fills a configuration template.
type ConfigData struct {
	ImagesRepo string // <registry host>/dhctl
	DockerCfg  string // base64 of a docker config.json with the registry's credentials
	RegistryCA string // the registry's CA certificate, indented for a block scalar under deckhouse:
	Prefix     string // the rig's network, e.g. 10.77.1.0/24
	// Gateway is the rig's bridge address: the machines' default gateway, where the registry
	// (and any other service a test starts in the rig's namespace) listens.
	Gateway string
	// Addresses are the machines' addresses, in start order (a cloud configuration gives them to
	// the machines it makes).
	Addresses []string
	// SSHPublicKey is the rig's key as an authorized_keys line (a cloud configuration's
	// sshPublicKey).
	SSHPublicKey string
}

// NodeImages are the images a node bundle pulls (kubeadm's control plane, etcd, CoreDNS,
// pause): enough for tests that install no CNI and no platform controller.
func NodeImages() []string {
	return []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "etcd", "coredns", "pause"}
}

// Options shape the lab. Machines start in this order: masters, workers, the plain machines,
// then the bastion.
type Options struct {
	// Masters and Workers are the machines BootstrapArgs names with --ssh-host and --worker-host.
	Masters, Workers int
	// Machines are more machines without a role, for tests that give roles themselves.
	Machines int
	// Bastion adds one more machine that is only an SSH jump host.
	Bastion bool
	// ClusterName is the --cluster-name of BootstrapArgs and names the state dir's cluster
	// directory; "lab" if empty.
	ClusterName string
	// Config is the text/template of the configuration, filled with ConfigData; FullConfig if
	// empty.
	Config string
	// Images are the images to publish; every image of the layout if empty. The node packages
	// are always published, all of them.
	Images []string
	// NoArtifacts leaves the registry empty (and writes no version-map override), for tests that
	// only log in to it.
	NoArtifacts bool
	// Dir holds the configuration, the state dir and the dhctl binary.
	Dir string
	// Checkout is the repository root (for building dhctl).
	Checkout string
	Logf     func(string, ...any)
}

// Lab is a running rig with a configuration for it.
type Lab struct {
	Rig      *rig.Rig
	Registry *rig.Registry
	// Published is what the registry holds; nil with Options.NoArtifacts.
	Published *artifacts.Published
	// Machines are all the machines, in start order; Masters, Workers and Bastion are among them.
	Machines         []*rig.Machine
	Masters, Workers []*rig.Machine
	Bastion          *rig.Machine

	// ClusterName is dhctl's --cluster-name for this lab.
	ClusterName string
	// Dir holds Bin (dhctl), ConfigPath, OverridePath (empty with Options.NoArtifacts),
	// KnownHosts and StateDir.
	Dir, Bin, ConfigPath, OverridePath, KnownHosts, StateDir string
	// ImagesRepo is where the artifacts are: <registry host>/dhctl.
	ImagesRepo string

	config *template.Template
}

// Start brings up the rig, the registry with the artifacts, the machines, and writes the
// configuration, the rig's version map override and known_hosts into o.Dir; it builds dhctl.
// On error everything started is torn down.
func Start(ctx context.Context, o Options) (_ *Lab, err error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Dir == "" {
		return nil, errors.New("lab: Options.Dir is empty")
	}
	if o.ClusterName == "" {
		o.ClusterName = "lab"
	}
	if o.Config == "" {
		o.Config = FullConfig
	}
	if len(o.Images) == 0 {
		o.Images = artifacts.ImageNames()
	}
	config, err := template.New("config").Parse(o.Config)
	if err != nil {
		return nil, fmt.Errorf("lab: the configuration template: %w", err)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	l := &Lab{Dir: o.Dir, StateDir: filepath.Join(o.Dir, "state"), ClusterName: o.ClusterName, config: config}
	// dhctl builds and the machines boot while the artifacts are pushed: the three take longest.
	built := make(chan error, 1)
	go func() { built <- l.build(ctx, o.Checkout) }()
	defer func() {
		if berr := <-built; berr != nil && err == nil {
			err = berr
		}
		if err != nil && l.Rig != nil {
			err = errors.Join(err, l.Rig.Close())
			l = nil
		}
	}()
	if l.Rig, err = rig.New(ctx, rig.Options{Logf: o.Logf}); err != nil {
		return nil, err
	}
	if l.Registry, err = l.Rig.StartRegistry(ctx); err != nil {
		return nil, err
	}
	l.ImagesRepo = l.Registry.Host + "/dhctl"
	n := o.Masters + o.Workers + o.Machines
	if o.Bastion {
		n++
	}
	type booted struct {
		ms  []*rig.Machine
		err error
	}
	boot := make(chan booted, 1)
	go func() {
		ms, err := l.Rig.StartMachines(ctx, n)
		boot <- booted{ms, err}
	}()
	if !o.NoArtifacts {
		reg := l.Registry
		l.Published, err = artifacts.Publish(ctx, artifacts.Options{Logf: o.Logf},
			images.Registry{Transport: reg.Transport(), User: reg.User, Password: reg.Password}, l.ImagesRepo,
			artifacts.Selection{Images: o.Images, Packages: artifacts.PackageNames()})
	}
	b := <-boot
	if err != nil {
		return nil, err
	}
	if b.err != nil {
		return nil, b.err
	}
	l.Machines = b.ms
	l.Masters, l.Workers = b.ms[:o.Masters], b.ms[o.Masters:o.Masters+o.Workers]
	if o.Bastion {
		l.Bastion = b.ms[n-1]
	}
	if l.ConfigPath, err = l.WriteConfig("config.yml", l.Registry.Password); err != nil {
		return nil, err
	}
	if l.Published != nil {
		if l.OverridePath, err = l.write("rig-version-map-override.yml", override(l.Published)); err != nil {
			return nil, err
		}
	}
	var lines []string
	for _, m := range b.ms {
		lines = append(lines, knownhosts.Line([]string{m.Address.String()}, m.HostKey))
	}
	if l.KnownHosts, err = l.write("known_hosts", strings.Join(lines, "\n")+"\n"); err != nil {
		return nil, err
	}
	return l, nil
}

// WriteConfig writes the lab's configuration, with password as the registry's, to name in Dir
// and returns its path. Start writes ConfigPath with the right password; tests of a wrong one
// write another.
func (l *Lab) WriteConfig(name, password string) (string, error) {
	return l.writeConfig(l.config, name, password)
}

// WriteConfigFrom writes another configuration template (the same ConfigData as Options.Config)
// to name in Dir and returns its path: a test's changed configuration of the same cluster.
func (l *Lab) WriteConfigFrom(name, tmpl string) (string, error) {
	t, err := template.New(name).Parse(tmpl)
	if err != nil {
		return "", fmt.Errorf("lab: the configuration template %s: %w", name, err)
	}
	return l.writeConfig(t, name, l.Registry.Password)
}

func (l *Lab) writeConfig(t *template.Template, name, password string) (string, error) {
	reg := l.Registry
	auth := base64.StdEncoding.EncodeToString([]byte(reg.User + ":" + password))
	var addrs []string
	for _, m := range l.Machines {
		addrs = append(addrs, m.Address.String())
	}
	var b strings.Builder
	err := t.Execute(&b, ConfigData{
		ImagesRepo:   l.ImagesRepo,
		DockerCfg:    base64.StdEncoding.EncodeToString(fmt.Appendf(nil, `{"auths":{%q:{"auth":%q}}}`, reg.Host, auth)),
		RegistryCA:   "    " + strings.ReplaceAll(strings.TrimSpace(string(reg.CACert)), "\n", "\n    "),
		Prefix:       l.Rig.Prefix().String(),
		Gateway:      l.Rig.BridgeAddress().String(),
		Addresses:    addrs,
		SSHPublicKey: l.SSHPublicKey(),
	})
	if err != nil {
		return "", fmt.Errorf("lab: the configuration template: %w", err)
	}
	return l.write(name, b.String())
}

// SSHPublicKey is the rig's key as an authorized_keys line, without a comment.
func (l *Lab) SSHPublicKey() string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(l.Rig.SSHSigner().PublicKey())))
}

func (l *Lab) build(ctx context.Context, checkout string) error {
	l.Bin = filepath.Join(l.Dir, "dhctl")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", l.Bin, "./cmd/dhctl")
	cmd.Dir = checkout
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building dhctl: %v\n%s", err, out)
	}
	return nil
}

func (l *Lab) write(name, content string) (string, error) {
	p := filepath.Join(l.Dir, name)
	return p, os.WriteFile(p, []byte(content), 0o600)
}

// Close tears the rig down.
func (l *Lab) Close() error { return l.Rig.Close() }

// CommonArgs are the flags every dhctl command an operator runs on this lab carries: the SSH
// user, key and known hosts, and the state dir.
func (l *Lab) CommonArgs() []string {
	return []string{"--ssh-user", "root", "--ssh-agent-private-keys", l.Rig.SSHKeyFile(),
		"--ssh-known-hosts", l.KnownHosts, "--state-dir", l.StateDir}
}

// BootstrapArgs is the `dhctl bootstrap` command line a user would type for this lab.
func (l *Lab) BootstrapArgs() []string {
	args := append(append([]string{"bootstrap", "--config", l.ConfigPath}, l.CommonArgs()...),
		"--cluster-name", l.ClusterName, "--version-map-override", l.OverridePath)
	for _, m := range l.Masters {
		args = append(args, "--ssh-host", m.Address.String())
	}
	for _, m := range l.Workers {
		args = append(args, "--worker-host", m.Address.String())
	}
	if l.Bastion != nil {
		args = append(args, "--ssh-bastion-host", l.Bastion.Address.String(), "--ssh-bastion-user", "root")
	}
	return args
}

// Command is dhctl with args, run inside the rig's network namespace (where the machines are)
// with only PATH and HOME in its environment, as an operator on that network runs it.
func (l *Lab) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + l.Rig.NetNS(), l.Bin}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + l.Dir}
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// Kubeconfig is the admin kubeconfig dhctl keeps in its state dir.
func (l *Lab) Kubeconfig() string { return filepath.Join(l.StateDir, l.ClusterName, "kubeconfig") }

// Kubectl runs the rig's kubectl (the artifacts' build) with dhctl's kubeconfig inside the
// rig's network namespace.
func (l *Lab) Kubectl(ctx context.Context, args ...string) (string, error) {
	bins, err := artifacts.Build(ctx, artifacts.Options{}, artifacts.Kubernetes)
	if err != nil {
		return "", err
	}
	kubectl, ok := bins["kubectl"]
	if !ok {
		return "", errors.New("the artifacts have no kubectl")
	}
	full := append([]string{"--net=" + l.Rig.NetNS(), kubectl, "--kubeconfig", l.Kubeconfig()}, args...)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nsenter", full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// override is the rig's TEST override of the version map: its locally built packages' sums
// (they differ from upstream's, and the check must not be weakened).
func override(pub *artifacts.Published) string {
	var b strings.Builder
	b.WriteString("# TEST OVERRIDE of candi/version_map.yml by the e2e rig: its locally built artifacts.\nkubernetes:\n  \"1.33\":\n    packages:\n")
	names := make([]string, 0, len(pub.Packages))
	for n := range pub.Packages {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := pub.Packages[n]
		tag := p.Ref[strings.LastIndex(p.Ref, ":")+1:]
		fmt.Fprintf(&b, "      %s:\n        version: %q\n        files:\n", n, tag)
		files := make([]string, 0, len(p.Files))
		for f := range p.Files {
			files = append(files, f)
		}
		sort.Strings(files)
		for _, f := range files {
			fmt.Fprintf(&b, "        - {name: %q, sha256: %s}\n", f, p.Files[f])
		}
		if n == "cni-plugins" {
			b.WriteString("        dest: /opt/cni/bin\n")
		}
	}
	return b.String()
}

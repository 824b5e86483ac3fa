// Package lab is a cluster-to-be on the e2e rig: machines, the registry with every offline
// artifact, the configuration a user would write for them, and the real dhctl binary run inside
// the rig's network namespace exactly as a user runs it. The bootstrap e2e tests and `make demo`
// share it.
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
	"time"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/dhctl-dev/dhctl/e2e/artifacts"
	"github.com/dhctl-dev/dhctl/e2e/images"
	"github.com/dhctl-dev/dhctl/e2e/rig"
)

// Options size the lab.
type Options struct {
	Masters, Workers int
	// Bastion adds one more machine that is only an SSH jump host.
	Bastion bool
	// Dir holds the configuration, the state dir and the dhctl binary.
	Dir string
	// Checkout is the repository root (for building dhctl).
	Checkout string
	Logf     func(string, ...any)
}

// Lab is a running rig with a configuration for it.
type Lab struct {
	Rig              *rig.Rig
	Masters, Workers []*rig.Machine
	Bastion          *rig.Machine

	Dir, Bin, ConfigPath, OverridePath, KnownHosts, StateDir string
	ImagesRepo                                               string
}

const clusterYAML = `apiVersion: deckhouse.io/v1
kind: ClusterConfiguration
clusterType: Static
podSubnetCIDR: 10.111.0.0/16
podSubnetNodeCIDRPrefix: "24"
serviceSubnetCIDR: 10.222.0.0/16
kubernetesVersion: Automatic
clusterDomain: cluster.local
defaultCRI: Containerd
---
apiVersion: deckhouse.io/v1
kind: InitConfiguration
deckhouse:
  imagesRepo: %s
  registryDockerCfg: %s
  registryScheme: HTTPS
  registryCA: |
%s
---
apiVersion: deckhouse.io/v1
kind: StaticClusterConfiguration
internalNetworkCIDRs:
- %s
---
apiVersion: deckhouse.io/v1
kind: NodeGroup
metadata:
  name: worker
spec:
  nodeType: Static
---
apiVersion: deckhouse.io/v1alpha1
kind: ModuleConfig
metadata:
  name: cni-flannel
spec:
  enabled: true
  version: 1
  settings:
    podNetworkMode: VXLAN
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
conntrack:
  maxPerCore: 0
`

// Start brings up the rig, the registry with every artifact, the machines, and writes the
// configuration, the rig's version map override and known_hosts into o.Dir; it builds dhctl.
// On error everything started is torn down.
func Start(ctx context.Context, o Options) (_ *Lab, err error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	l := &Lab{Dir: o.Dir, StateDir: filepath.Join(o.Dir, "state")}
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
	reg, err := l.Rig.StartRegistry(ctx)
	if err != nil {
		return nil, err
	}
	l.ImagesRepo = reg.Host + "/dhctl"
	n := o.Masters + o.Workers
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
	pub, err := artifacts.Publish(ctx, artifacts.Options{Logf: o.Logf},
		images.Registry{Transport: reg.Transport(), User: reg.User, Password: reg.Password}, l.ImagesRepo,
		artifacts.Selection{Images: artifacts.ImageNames(), Packages: artifacts.PackageNames()})
	b := <-boot
	if err != nil {
		return nil, err
	}
	if b.err != nil {
		return nil, b.err
	}
	l.Masters, l.Workers = b.ms[:o.Masters], b.ms[o.Masters:o.Masters+o.Workers]
	if o.Bastion {
		l.Bastion = b.ms[n-1]
	}
	dockerCfg := base64.StdEncoding.EncodeToString(fmt.Appendf(nil, `{"auths":{%q:{"auth":%q}}}`,
		reg.Host, base64.StdEncoding.EncodeToString([]byte(reg.User+":"+reg.Password))))
	ca := "    " + strings.ReplaceAll(strings.TrimSpace(string(reg.CACert)), "\n", "\n    ")
	if l.ConfigPath, err = l.write("config.yml", fmt.Sprintf(clusterYAML, l.ImagesRepo, dockerCfg, ca, l.Rig.Prefix())); err != nil {
		return nil, err
	}
	if l.OverridePath, err = l.write("rig-version-map-override.yml", Override(pub)); err != nil {
		return nil, err
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

// BootstrapArgs is the `dhctl bootstrap` command line a user would type for this lab.
func (l *Lab) BootstrapArgs() []string {
	args := []string{"bootstrap", "--config", l.ConfigPath, "--ssh-user", "root",
		"--ssh-agent-private-keys", l.Rig.SSHKeyFile(), "--ssh-known-hosts", l.KnownHosts,
		"--state-dir", l.StateDir, "--cluster-name", "lab",
		"--version-map-override", l.OverridePath}
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

// Command is dhctl with args, run inside the rig's network namespace (where the machines are).
func (l *Lab) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + l.Rig.NetNS(), l.Bin}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + l.Dir}
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// Kubeconfig is the admin kubeconfig dhctl keeps in its state dir.
func (l *Lab) Kubeconfig() string { return filepath.Join(l.StateDir, "lab", "kubeconfig") }

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

// Override is the rig's TEST override of the version map: its locally built packages' sums.
func Override(pub *artifacts.Published) string {
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

package abort_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/dhctl-dev/dhctl/e2e/artifacts"
	labpkg "github.com/dhctl-dev/dhctl/e2e/bootstrap/lab"
	"github.com/dhctl-dev/dhctl/e2e/images"
	"github.com/dhctl-dev/dhctl/e2e/internal/rigtest"
	"github.com/dhctl-dev/dhctl/e2e/rig"
)

// The same rig setup as e2e/node (which keeps its own unexported): a registry holding the
// control plane's images and the node packages, machines, the configuration, the rig's TEST
// version-map override, known hosts and the dhctl binary of this checkout.

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
- 10.77.1.0/24
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
conntrack:
  maxPerCore: 0
`

type lab struct {
	rig          *rig.Rig
	machines     []*rig.Machine
	dir          string
	bin          string
	cfgPath      string
	overridePath string
	knownHosts   string
	stateDir     string
}

func newLab(ctx context.Context, tb testing.TB, machines int) *lab {
	tb.Helper()
	r, err := rig.New(ctx, rig.Options{Logf: tb.Logf})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := r.Close(); err != nil {
			tb.Errorf("rig Close: %v", err)
		}
	})
	reg, err := r.StartRegistry(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	l := &lab{rig: r, dir: tb.TempDir()}
	l.bin = filepath.Join(l.dir, "dhctl")
	l.stateDir = filepath.Join(l.dir, "state")
	built := make(chan error, 1)
	go func() {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", l.bin, "./cmd/dhctl")
		cmd.Dir = filepath.Join("..", "..")
		out, err := cmd.CombinedOutput()
		if err != nil {
			err = fmt.Errorf("building dhctl: %v\n%s", err, out)
		}
		built <- err
	}()
	type booted struct {
		ms  []*rig.Machine
		err error
	}
	boot := make(chan booted, 1)
	go func() {
		ms, err := r.StartMachines(ctx, machines)
		boot <- booted{ms, err}
	}()
	start := time.Now()
	imagesRepo := reg.Host + "/dhctl"
	pub, err := artifacts.Publish(ctx, artifacts.Options{Logf: tb.Logf},
		images.Registry{Transport: reg.Transport(), User: reg.User, Password: reg.Password}, imagesRepo,
		artifacts.Selection{
			Images:   []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "etcd", "coredns", "pause"},
			Packages: artifacts.PackageNames(),
		})
	b := <-boot
	berr := <-built
	for _, e := range []error{err, b.err, berr} {
		if e != nil {
			tb.Fatal(e)
		}
	}
	l.machines = b.ms
	tb.Logf("registry, %d machines, artifacts and dhctl ready in %v", machines, time.Since(start).Round(100*time.Millisecond))

	dockerCfg := base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`,
		reg.Host, base64.StdEncoding.EncodeToString([]byte(reg.User+":"+reg.Password)))))
	ca := "    " + strings.ReplaceAll(strings.TrimSpace(string(reg.CACert)), "\n", "\n    ")
	l.cfgPath = filepath.Join(l.dir, "cluster.yml")
	l.overridePath = filepath.Join(l.dir, "rig-version-map-override.yml")
	l.knownHosts = filepath.Join(l.dir, "known_hosts")
	var lines []string
	for _, m := range b.ms {
		lines = append(lines, knownhosts.Line([]string{m.Address.String()}, m.HostKey))
	}
	for path, data := range map[string]string{
		l.cfgPath:      fmt.Sprintf(clusterYAML, imagesRepo, dockerCfg, ca),
		l.overridePath: labpkg.Override(pub),
		l.knownHosts:   strings.Join(lines, "\n") + "\n",
	} {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return l
}

// dhctl runs the dhctl binary inside the rig's network namespace with the rig's SSH settings
// and state dir, and returns its combined output and exit code.
func (l *lab) dhctl(ctx context.Context, tb testing.TB, args ...string) (string, int, time.Duration) {
	tb.Helper()
	full := append(append([]string{}, args...), "--ssh-user", "root", "--ssh-agent-private-keys", l.rig.SSHKeyFile(),
		"--ssh-known-hosts", l.knownHosts, "--state-dir", l.stateDir)
	cmd := rigtest.Command(ctx, l.rig, l.bin, l.dir, full...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		tb.Fatal(err)
	}
	tb.Logf("dhctl %s: exit %d in %v\n%s", strings.Join(args[:2], " "), code, took.Round(10*time.Millisecond), out)
	return string(out), code, took
}

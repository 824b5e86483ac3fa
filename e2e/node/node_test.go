// Package node_test is the node bootstrap on the rig: a fresh machine becomes a single-node
// control plane through the product's bundle, a second machine joins as a worker, a re-run
// changes nothing, and a package whose checksum does not match stops at the packages step.
package node_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/e2e/artifacts"
	"github.com/dhctl-dev/dhctl/e2e/images"
	"github.com/dhctl-dev/dhctl/e2e/rig"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/kubeadm"
	"github.com/dhctl-dev/dhctl/internal/node"
	"github.com/dhctl-dev/dhctl/internal/operations/nodebundle"
	"github.com/dhctl-dev/dhctl/internal/ssh"
)

// clusterYAML is the configuration the test bootstraps, as a user would write it, plus a
// KubeProxyConfiguration: inside the rig's machines nf_conntrack_max cannot be set.
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

func TestNodeBootstrap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelInfo}))

	r, err := rig.New(ctx, rig.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("rig Close: %v", err)
		}
	})
	reg, err := r.StartRegistry(ctx)
	if err != nil {
		t.Fatal(err)
	}
	imagesRepo := reg.Host + "/dhctl"
	type booted struct {
		ms  []*rig.Machine
		err error
	}
	boot := make(chan booted, 1)
	go func() {
		ms, err := r.StartMachines(ctx, 2)
		boot <- booted{ms, err}
	}()
	start := time.Now()
	pub, err := artifacts.Publish(ctx, artifacts.Options{Logf: t.Logf},
		images.Registry{Transport: reg.Transport(), User: reg.User, Password: reg.Password}, imagesRepo,
		artifacts.Selection{
			Images:   []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "etcd", "coredns", "pause"},
			Packages: artifacts.PackageNames(),
		})
	b := <-boot
	if err != nil {
		t.Fatal(err)
	}
	if b.err != nil {
		t.Fatal(b.err)
	}
	t.Logf("registry, 2 machines and artifacts ready in %v", time.Since(start))
	master, worker := b.ms[0], b.ms[1]

	// The configuration, loaded the way dhctl loads it.
	dir := t.TempDir()
	dockerCfg := base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`,
		reg.Host, base64.StdEncoding.EncodeToString([]byte(reg.User+":"+reg.Password)))))
	cfgPath := filepath.Join(dir, "cluster.yml")
	ca := "    " + strings.ReplaceAll(strings.TrimSpace(string(reg.CACert)), "\n", "\n    ")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(clusterYAML, imagesRepo, dockerCfg, ca)), 0o600); err != nil {
		t.Fatal(err)
	}
	cluster, err := config.Load(ctx, config.LoadOptions{ConfigPaths: []string{cfgPath}})
	if err != nil {
		t.Fatal(err)
	}
	vm, err := config.LoadVersionMap(candi.FS)
	if err != nil {
		t.Fatal(err)
	}
	// The rig builds its own artifacts: their sums differ from upstream, so the rig hands over
	// a version-map OVERRIDE with its digests (never a weakened check).
	overrideText := rigOverride(pub)
	override, err := config.ParseVersionMapOverride([]byte(overrideText))
	if err != nil {
		t.Fatalf("%v\n%s", err, overrideText)
	}
	t.Logf("using the rig's TEST version-map override:\n%s", overrideText)
	vm = vm.WithOverride(override)

	plan, err := nodebundle.NewPlan(candi.FS, cluster, vm, master.Address.String())
	if err != nil {
		t.Fatal(err)
	}
	srv, addr, err := plan.StartPackages(nodebundle.PackagesOptions{Transport: reg.Transport(), CacheDir: filepath.Join(dir, "packages"), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	exec := node.ExecOptions{PackagesAddr: addr, Log: log}

	knownHosts := filepath.Join(dir, "known_hosts")
	var lines []string
	for _, m := range b.ms {
		lines = append(lines, knownhosts.Line([]string{m.Address.String()}, m.HostKey))
	}
	if err := os.WriteFile(knownHosts, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	connect := func(m *rig.Machine) *ssh.Client {
		c, err := ssh.New(ssh.Config{
			Host: m.Address.String(), User: "root",
			Auth:     ssh.Auth{Keys: []ssh.KeyFile{{Path: r.SSHKeyFile()}}},
			HostKeys: ssh.HostKeyPolicy{StateDir: dir, UserKnownHostsFile: knownHosts},
			Logger:   log, DialContext: r.DialContext,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	mc, wc := connect(master), connect(worker)

	// 1. A fresh machine becomes a single-node control plane.
	secrets, err := kubeadm.NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	res, err := plan.BootstrapFirstMaster(ctx, mc, master.Address.String(), secrets, exec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE first master bundle on a fresh machine: %v (%s)", time.Since(start).Round(100*time.Millisecond), stepTimes(res.Report))
	if !strings.Contains(string(res.Kubeconfig), "client-key-data") {
		t.Errorf("admin kubeconfig has no client key")
	}
	if out, err := master.Run(ctx, "grep -h 'kubeadm init took' /var/lib/dhctl/bashible/log/060_kubeadm.log", nil); err == nil {
		t.Logf("FIGURE %s", strings.TrimSpace(out))
	}
	kubectl := "kubectl --kubeconfig /etc/kubernetes/admin.conf "
	mustRun(ctx, t, master, "systemctl is-active kubelet containerd", "active\nactive")
	mustRun(ctx, t, master, kubectl+"get --raw /readyz", "ok")
	waitFor(ctx, t, 3*time.Minute, "the control plane's static pods Running", func() (bool, string) {
		out, err := master.Run(ctx, kubectl+"get pods -n kube-system -o custom-columns=NAME:.metadata.name,PHASE:.status.phase --no-headers", nil)
		if err != nil {
			return false, out
		}
		for _, c := range []string{"etcd-", "kube-apiserver-", "kube-controller-manager-", "kube-scheduler-"} {
			if !strings.Contains(out, c) || !lineHas(out, c, "Running") {
				return false, out
			}
		}
		return true, out
	})

	// 2. A second machine joins as a worker and registers as a Node (Ready needs the CNI,
	// which the install issue adds).
	start = time.Now()
	wrep, err := plan.Join(ctx, wc, worker.Address.String(), node.RoleWorker, res.Join, exec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE worker bundle (join) on a fresh machine: %v (%s)", time.Since(start).Round(100*time.Millisecond), stepTimes(wrep))
	waitFor(ctx, t, 2*time.Minute, "node "+worker.Name+" to register", func() (bool, string) {
		out, err := master.Run(ctx, kubectl+"get nodes -o name", nil)
		return err == nil && strings.Contains(out, "node/"+worker.Name), out
	})

	// 3. Re-running the bundle on the finished master changes nothing.
	start = time.Now()
	again, err := plan.BootstrapFirstMaster(ctx, mc, master.Address.String(), secrets, exec)
	if err != nil {
		t.Fatal(err)
	}
	rerun := time.Since(start)
	if ran := again.Report.Ran(); len(ran) != 0 {
		t.Errorf("re-run on the finished master ran steps %v; want every step skipped", ran)
	}
	if again.Join.CACertHash != res.Join.CACertHash {
		t.Errorf("re-run changed the cluster CA")
	}
	t.Logf("FIGURE re-run on the finished master: %v, %d steps skipped", rerun.Round(10*time.Millisecond), len(again.Report.Steps))

	// 4. A package whose checksum does not match stops at the packages step, naming it.
	bad := vm.WithOverride(mustOverride(t, fmt.Sprintf(`kubernetes:
  "1.33":
    packages:
      kubectl:
        version: v1.33.13-tampered
        files: [{name: kubectl, sha256: %s}]
`, strings.Repeat("0", 64))))
	badPlan, err := nodebundle.NewPlan(candi.FS, cluster, bad, master.Address.String())
	if err != nil {
		t.Fatal(err)
	}
	badSrv, badAddr, err := badPlan.StartPackages(nodebundle.PackagesOptions{Transport: reg.Transport(), CacheDir: filepath.Join(dir, "packages-bad"), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer badSrv.Close()
	_, err = badPlan.Join(ctx, wc, worker.Address.String(), node.RoleWorker, res.Join, node.ExecOptions{PackagesAddr: badAddr, Log: log})
	var stepErr *node.StepError
	if !asStepError(err, &stepErr) || stepErr.Step != "030_packages" || !strings.Contains(err.Error(), "package kubectl") {
		t.Fatalf("bad checksum: want the 030_packages step to fail naming kubectl, got %v", err)
	}
	t.Logf("bad checksum stopped as expected:\n%v", err)
	// The tampered package never replaced the installed one.
	mustRun(ctx, t, worker, "kubectl version --client 2>/dev/null | head -n1", "v1.33.13")
}

func rigOverride(pub *artifacts.Published) string {
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

func mustOverride(t *testing.T, text string) *config.VersionMap {
	t.Helper()
	o, err := config.ParseVersionMapOverride([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func asStepError(err error, target **node.StepError) bool {
	se, ok := err.(*node.StepError)
	if ok {
		*target = se
	}
	return ok
}

func stepTimes(r node.Report) string {
	var parts []string
	for _, s := range r.Steps {
		parts = append(parts, fmt.Sprintf("%s %s %v", s.Name, s.Status, s.Duration.Round(100*time.Millisecond)))
	}
	return strings.Join(parts, ", ")
}

func mustRun(ctx context.Context, t *testing.T, m *rig.Machine, cmd, want string) {
	t.Helper()
	out, err := m.Run(ctx, cmd, nil)
	if err != nil || !strings.Contains(out, want) {
		t.Fatalf("%s on %s: %q, %v; want %q", cmd, m.Name, out, err, want)
	}
}

func waitFor(ctx context.Context, t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ok, out := cond()
		if ok {
			return
		}
		last = out
		time.Sleep(2 * time.Second)
	}
	t.Fatalf("timed out after %v waiting for %s; last output:\n%s", d, what, last)
}

func lineHas(out, prefix, word string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) && strings.Contains(l, word) {
			return true
		}
	}
	return false
}

// testWriter logs to the test until it ends (goroutines such as SSH keepalives may log later).
type testWriter struct {
	t      *testing.T
	mu     *sync.Mutex
	closed *bool
}

func newTestWriter(t *testing.T) testWriter {
	w := testWriter{t: t, mu: &sync.Mutex{}, closed: new(bool)}
	t.Cleanup(func() { w.mu.Lock(); *w.closed = true; w.mu.Unlock() })
	return w
}

func (w testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !*w.closed {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// Package node_test is the node bootstrap on the rig: a fresh machine becomes a single-node
// control plane through the product's bundle, a second machine joins as a worker, a re-run
// changes nothing, and a package whose checksum does not match stops at the packages step.
package node_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/e2e/artifacts"
	"github.com/dhctl-dev/dhctl/e2e/bootstrap/lab"
	"github.com/dhctl-dev/dhctl/e2e/images"
	"github.com/dhctl-dev/dhctl/e2e/internal/rigtest"
	"github.com/dhctl-dev/dhctl/e2e/rig"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/operations/nodebundle"
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

// env is a rig with a registry holding every artifact, machines, the configuration, the rig's
// version-map override and a dhctl binary to run against them.
type env struct {
	tb           testing.TB
	ctx          context.Context
	rig          *rig.Rig
	machines     []*rig.Machine
	pub          *artifacts.Published
	dir          string
	bin          string
	cfgPath      string
	overridePath string
	overrideText string
	knownHosts   string
	stateDir     string
}

func newEnv(ctx context.Context, tb testing.TB, machines int) *env {
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
	imagesRepo := reg.Host + "/dhctl"
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
	pub, err := artifacts.Publish(ctx, artifacts.Options{Logf: tb.Logf},
		images.Registry{Transport: reg.Transport(), User: reg.User, Password: reg.Password}, imagesRepo,
		artifacts.Selection{
			Images:   []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "etcd", "coredns", "pause"},
			Packages: artifacts.PackageNames(),
		})
	b := <-boot
	if err != nil {
		tb.Fatal(err)
	}
	if b.err != nil {
		tb.Fatal(b.err)
	}
	tb.Logf("registry, %d machines and artifacts ready in %v", machines, time.Since(start))
	e := &env{tb: tb, ctx: ctx, rig: r, machines: b.ms, pub: pub, dir: tb.TempDir()}

	// The configuration, loaded the way dhctl loads it.
	dockerCfg := base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`,
		reg.Host, base64.StdEncoding.EncodeToString([]byte(reg.User+":"+reg.Password)))))
	e.cfgPath = filepath.Join(e.dir, "cluster.yml")
	ca := "    " + strings.ReplaceAll(strings.TrimSpace(string(reg.CACert)), "\n", "\n    ")
	if err := os.WriteFile(e.cfgPath, []byte(fmt.Sprintf(clusterYAML, imagesRepo, dockerCfg, ca)), 0o600); err != nil {
		tb.Fatal(err)
	}
	cluster, err := config.Load(ctx, config.LoadOptions{ConfigPaths: []string{e.cfgPath}})
	if err != nil {
		tb.Fatal(err)
	}
	vm, err := config.LoadVersionMap(candi.FS)
	if err != nil {
		tb.Fatal(err)
	}
	// The rig builds its own artifacts: their sums differ from upstream, so the rig hands over
	// a version-map OVERRIDE with its digests (never a weakened check).
	e.overrideText = lab.Override(pub)
	override, err := config.ParseVersionMapOverride([]byte(e.overrideText))
	if err != nil {
		tb.Fatalf("%v\n%s", err, e.overrideText)
	}
	tb.Logf("using the rig's TEST version-map override:\n%s", e.overrideText)
	// The plan must accept the configuration with the override (what dhctl will do).
	if _, err := nodebundle.NewPlan(candi.FS, cluster, vm.WithOverride(override), b.ms[0].Address.String()); err != nil {
		tb.Fatal(err)
	}
	e.overridePath = filepath.Join(e.dir, "rig-version-map-override.yml")
	if err := os.WriteFile(e.overridePath, []byte(e.overrideText), 0o600); err != nil {
		tb.Fatal(err)
	}
	e.knownHosts = filepath.Join(e.dir, "known_hosts")
	var lines []string
	for _, m := range b.ms {
		lines = append(lines, knownhosts.Line([]string{m.Address.String()}, m.HostKey))
	}
	if err := os.WriteFile(e.knownHosts, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	e.bin = rigtest.BuildDhctl(ctx, tb, e.dir)
	e.stateDir = filepath.Join(e.dir, "state")
	return e
}

// dhctl runs `dhctl bootstrap-phase execute-bashible-bundle` for one host inside the rig's
// network namespace, like an operator on that network.
func (e *env) dhctl(host string, extra ...string) (cliResult, error) {
	args := append([]string{"bootstrap-phase", "execute-bashible-bundle",
		"--config", e.cfgPath, "--ssh-host", host, "--ssh-user", "root", "--ssh-agent-private-keys", e.rig.SSHKeyFile(),
		"--ssh-known-hosts", e.knownHosts, "--state-dir", e.stateDir, "--cluster-name", "rig-node", "--log-format", "json",
		"--version-map-override", e.overridePath}, extra...)
	cmd := rigtest.Command(e.ctx, e.rig, e.bin, e.dir, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	res := parseCLI(out)
	res.took = time.Since(start)
	e.tb.Logf("dhctl execute-bashible-bundle --ssh-host %s %v: %v in %v", host, extra, err, res.took.Round(10*time.Millisecond))
	for _, l := range res.lines {
		e.tb.Log("  " + l)
	}
	return res, err
}

func TestNodeBootstrap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	e := newEnv(ctx, t, 3)
	master, worker, master2 := e.machines[0], e.machines[1], e.machines[2]
	r, dhctl, stateDir, pub, overrideText, overridePath := e.rig, e.dhctl, e.stateDir, e.pub, e.overrideText, e.overridePath

	// 1. A fresh machine becomes a single-node control plane.
	res, err := dhctl(master.Address.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE first master bundle on a fresh machine: dhctl took %v (%s)", res.took.Round(100*time.Millisecond), res.steps)
	if out, err := master.Run(ctx, "grep -h 'kubeadm init took' /var/lib/dhctl/bashible/log/060_kubeadm.log", nil); err == nil {
		t.Logf("FIGURE %s", strings.TrimSpace(out))
	}
	kubectl := "kubectl --kubeconfig /etc/kubernetes/admin.conf "
	rigtest.MustRun(ctx, t, master, "systemctl is-active kubelet containerd", "active\nactive")
	rigtest.MustRun(ctx, t, master, kubectl+"get --raw /readyz", "ok")
	// The admin kubeconfig dhctl kept in the state dir works from the operator's side too.
	kubeconfig := filepath.Join(stateDir, "rig-node", "kubeconfig")
	if fi, err := os.Stat(kubeconfig); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin kubeconfig in the state dir: %v %v", fi, err)
	}
	bins, err := artifacts.Build(ctx, artifacts.Options{Logf: t.Logf}, artifacts.Kubernetes)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "nsenter", "--net="+r.NetNS(), bins["kubectl"], "--kubeconfig", kubeconfig, "get", "--raw", "/readyz").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("kubectl get --raw /readyz through the saved admin kubeconfig: %q %v", out, err)
	}
	rigtest.WaitFor(ctx, t, 3*time.Minute, "the control plane's static pods Running", func() (bool, string) {
		out, err := master.Run(ctx, kubectl+"get pods -n kube-system -o custom-columns=NAME:.metadata.name,PHASE:.status.phase --no-headers", nil)
		if err != nil {
			return false, out
		}
		for _, c := range []string{"etcd-", "kube-apiserver-", "kube-controller-manager-", "kube-scheduler-", "kube-proxy-"} {
			if !lineHas(out, c, "Running") {
				return false, out
			}
		}
		return true, out
	})
	// kube-proxy got the configuration's KubeProxyConfiguration (nf_conntrack_max left alone).
	rigtest.MustRun(ctx, t, master, kubectl+"-n kube-system get configmap kube-proxy -o jsonpath='{.data.config\\.conf}' | grep maxPerCore", "maxPerCore: 0")
	// Files holding secrets (bootstrap token, registry password) are root-only.
	if out, err := master.Run(ctx, "stat -c '%a %n' /var/lib/dhctl/bashible /var/lib/dhctl/bashible/bundle /var/lib/dhctl/bashible/bundle/steps/*.sh /etc/kubernetes/dhctl/kubeadm.yaml /etc/containerd/config.toml", nil); err != nil {
		t.Errorf("stat: %v", err)
	} else {
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if mode, _, _ := strings.Cut(l, " "); mode != "700" && mode != "600" {
				t.Errorf("readable beyond root: %s", l)
			}
		}
	}

	// 2. A second machine joins as a worker and registers as a Node (Ready needs the CNI,
	// which the install issue adds).
	res, err = dhctl(worker.Address.String(), "--role", "worker")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE worker bundle (join) on a fresh machine: dhctl took %v (%s)", res.took.Round(100*time.Millisecond), res.steps)
	rigtest.WaitFor(ctx, t, 2*time.Minute, "node "+worker.Name+" to register", func() (bool, string) {
		out, err := master.Run(ctx, kubectl+"get nodes -o name", nil)
		return err == nil && strings.Contains(out, "node/"+worker.Name), out
	})

	// 2b. A third machine joins as another control-plane node (certificates uploaded at init).
	res, err = dhctl(master2.Address.String(), "--role", "master")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE second master bundle (control-plane join) on a fresh machine: dhctl took %v (%s)", res.took.Round(100*time.Millisecond), res.steps)
	rigtest.MustRun(ctx, t, master2, kubectl+"get --raw /readyz", "ok")
	rigtest.WaitFor(ctx, t, 3*time.Minute, "etcd and kube-apiserver of "+master2.Name+" Running", func() (bool, string) {
		out, err := master.Run(ctx, kubectl+"get pods -n kube-system -o custom-columns=NAME:.metadata.name,PHASE:.status.phase --no-headers", nil)
		return err == nil && lineHas(out, "etcd-"+master2.Name, "Running") && lineHas(out, "kube-apiserver-"+master2.Name, "Running"), out
	})

	// 3. Re-running the bundle on the finished master changes nothing.
	res, err = dhctl(master.Address.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.stepsRun != 0 || res.stepsSkipped != 6 {
		t.Errorf("re-run on the finished master: %d steps ran, %d skipped; want 0 and 6", res.stepsRun, res.stepsSkipped)
	}
	t.Logf("FIGURE re-run on the finished master: dhctl took %v (bundle %s)", res.took.Round(10*time.Millisecond), res.bundleTook)

	// 4. A package whose checksum does not match stops at the packages step, naming it.
	badText := strings.Replace(overrideText, "- {name: \"kubectl\", sha256: "+pub.Packages["kubectl"].Files["kubectl"],
		"- {name: \"kubectl\", sha256: "+strings.Repeat("0", 64), 1)
	if badText == overrideText {
		t.Fatal("could not tamper with kubectl's sum in the override")
	}
	if err := os.WriteFile(overridePath, []byte(badText), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err = dhctl(worker.Address.String(), "--role", "worker")
	if err == nil {
		t.Fatal("a package with a wrong checksum was installed")
	}
	if !strings.Contains(res.errText, "bundle step 030_packages failed") || !strings.Contains(res.errText, "package kubectl") {
		t.Fatalf("bad checksum: want the 030_packages step to fail naming kubectl; dhctl said:\n%s", res.errText)
	}
	// The tampered package never replaced the installed one.
	rigtest.MustRun(ctx, t, worker, "kubectl version --client 2>/dev/null | head -n1", "v1.33.13")
}

// cliResult is what a dhctl run printed (--log-format json), summarised.
type cliResult struct {
	lines                  []string
	steps                  string
	stepsRun, stepsSkipped int
	bundleTook             string // the bundle run, as dhctl measured it
	errText                string
	took                   time.Duration
}

func parseCLI(out []byte) cliResult {
	var r cliResult
	var steps []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		r.lines = append(r.lines, l)
		var ev map[string]any
		if json.Unmarshal([]byte(l), &ev) != nil {
			r.errText += l + "\n"
			continue
		}
		if e, ok := ev["error"].(string); ok {
			r.errText += e + "\n"
		}
		switch ev["msg"] {
		case "step done":
			steps = append(steps, fmt.Sprintf("%v %v", ev["step"], time.Duration(num(ev["took"])).Round(100*time.Millisecond)))
		case "node bundle finished":
			r.stepsRun = int(num(ev["steps_run"]))
			r.stepsSkipped = int(num(ev["steps_skipped"]))
			r.bundleTook = time.Duration(num(ev["took"])).Round(10 * time.Millisecond).String()
		}
	}
	r.steps = strings.Join(steps, ", ")
	return r
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

func lineHas(out, prefix, word string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) && strings.Contains(l, word) {
			return true
		}
	}
	return false
}

// BenchmarkRerun measures a re-run of the bundle on a finished control-plane node through the
// dhctl binary (process start, SSH, upload, every step skipped), after one bootstrap whose
// figures it reports too.
func BenchmarkRerun(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	e := newEnv(ctx, b, 1)
	host := e.machines[0].Address.String()
	res, err := e.dhctl(host)
	if err != nil {
		b.Fatal(err)
	}
	fresh := res.took
	var kubeadmInit float64
	if out, err := e.machines[0].Run(ctx, "grep -ho 'kubeadm init took [0-9]*' /var/lib/dhctl/bashible/log/060_kubeadm.log | grep -o '[0-9]*$'", nil); err == nil {
		fmt.Sscan(strings.TrimSpace(out), &kubeadmInit)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := e.dhctl(host)
		if err != nil {
			b.Fatal(err)
		}
		if res.stepsRun != 0 {
			b.Fatalf("re-run ran %d steps", res.stepsRun)
		}
	}
	// Reported after the loop: ResetTimer drops metrics reported before it.
	b.ReportMetric(fresh.Seconds(), "fresh-bundle-s")
	b.ReportMetric(kubeadmInit, "kubeadm-init-s")
}

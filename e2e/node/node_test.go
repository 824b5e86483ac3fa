// Package node_test is the node bootstrap on the rig: a fresh machine becomes a single-node
// control plane through the product's bundle, a second machine joins as a worker, a re-run
// changes nothing, and a package whose checksum does not match stops at the packages step.
package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/e2e/internal/lab"
	"github.com/dhctl-dev/dhctl/e2e/internal/rigtest"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/nodebundle"
)

// env is a lab (machines, a registry with the images a node bundle pulls and every package,
// the configuration plus a KubeProxyConfiguration, the rig's version-map override, dhctl) and
// the test that runs dhctl on it.
type env struct {
	*lab.Lab
	overrideText string
	tb           testing.TB
	ctx          context.Context
}

func newEnv(ctx context.Context, tb testing.TB, machines int) *env {
	tb.Helper()
	l := rigtest.StartLab(ctx, tb, lab.Options{Machines: machines, ClusterName: "rig-node", Images: lab.NodeImages(),
		Config: lab.StaticCluster + lab.KubeProxy})
	// The configuration, loaded the way dhctl loads it.
	cluster, err := config.Load(ctx, config.LoadOptions{ConfigPaths: []string{l.ConfigPath}})
	if err != nil {
		tb.Fatal(err)
	}
	vm, err := config.LoadVersionMap(candi.FS)
	if err != nil {
		tb.Fatal(err)
	}
	// The rig builds its own artifacts: their sums differ from upstream, so the rig hands over
	// a version-map OVERRIDE with its digests (never a weakened check).
	overrideText, err := os.ReadFile(l.OverridePath)
	if err != nil {
		tb.Fatal(err)
	}
	override, err := config.ParseVersionMapOverride(overrideText)
	if err != nil {
		tb.Fatalf("%v\n%s", err, overrideText)
	}
	tb.Logf("using the rig's TEST version-map override:\n%s", overrideText)
	// The plan must accept the configuration with the override (what dhctl will do).
	if _, err := nodebundle.NewPlan(candi.FS, cluster, vm.WithOverride(override), l.Machines[0].Address.String()); err != nil {
		tb.Fatal(err)
	}
	return &env{Lab: l, overrideText: string(overrideText), tb: tb, ctx: ctx}
}

// dhctl runs `dhctl bootstrap-phase execute-bashible-bundle` for one host inside the rig's
// network namespace, like an operator on that network.
func (e *env) dhctl(host string, extra ...string) (cliResult, error) {
	args := append(append([]string{"bootstrap-phase", "execute-bashible-bundle", "--config", e.ConfigPath, "--ssh-host", host},
		e.CommonArgs()...), "--cluster-name", e.ClusterName, "--log-format", "json", "--version-map-override", e.OverridePath)
	cmd := e.Command(e.ctx, append(args, extra...)...)
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
	master, worker, master2 := e.Machines[0], e.Machines[1], e.Machines[2]
	dhctl, pub, overrideText, overridePath := e.dhctl, e.Published, e.overrideText, e.OverridePath

	// 1. A fresh machine becomes a single-node control plane.
	res, err := dhctl(master.Address.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE first master bundle on a fresh machine: dhctl took %v (%s)", res.took.Round(100*time.Millisecond), res.steps)
	if out, err := master.Run(ctx, "grep -h 'kubeadm init took' /var/lib/dhctl/bashible/log/060_kubeadm.log", nil); err == nil {
		t.Logf("FIGURE %s", strings.TrimSpace(out))
	}
	// The step log on the node holds kubeadm's output: no bootstrap token, no certificate key.
	// The token is the one this cluster has (in its bootstrap-token Secret).
	rigtest.MustRun(ctx, t, master, `log=/var/lib/dhctl/bashible/log/060_kubeadm.log; test -s $log &&
		id=$(kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system get secrets -o name | grep -m1 bootstrap-token- | cut -d- -f3) &&
		test -n "$id" && ! grep -q "$id\." $log && ! grep -v sha256: $log | grep -Eq '\b[0-9a-f]{64}\b' && echo clean`, "clean")
	kubectl := "kubectl --kubeconfig /etc/kubernetes/admin.conf "
	rigtest.MustRun(ctx, t, master, "systemctl is-active kubelet containerd", "active\nactive")
	rigtest.MustRun(ctx, t, master, kubectl+"get --raw /readyz", "ok")
	// The admin kubeconfig dhctl kept in the state dir works from the operator's side too.
	if fi, err := os.Stat(e.Kubeconfig()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin kubeconfig in the state dir: %v %v", fi, err)
	}
	if out, err := e.Kubectl(ctx, "get", "--raw", "/readyz"); err != nil || strings.TrimSpace(out) != "ok" {
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
	steps, err := fs.Glob(candi.FS, "bashible/steps/*.sh.tpl")
	if err != nil {
		t.Fatal(err)
	}
	if res.stepsRun != 0 || res.stepsSkipped != len(steps) {
		t.Errorf("re-run on the finished master: %d steps ran, %d skipped; want 0 and all %d", res.stepsRun, res.stepsSkipped, len(steps))
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
	if !strings.Contains(res.errText, "bundle step 047_kubernetes_packages failed") || !strings.Contains(res.errText, "package kubectl") {
		t.Fatalf("bad checksum: want the 047_kubernetes_packages step to fail naming kubectl; dhctl said:\n%s", res.errText)
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
	host := e.Machines[0].Address.String()
	res, err := e.dhctl(host)
	if err != nil {
		b.Fatal(err)
	}
	fresh := res.took
	var kubeadmInit float64
	if out, err := e.Machines[0].Run(ctx, "grep -ho 'kubeadm init took [0-9]*' /var/lib/dhctl/bashible/log/060_kubeadm.log | grep -o '[0-9]*$'", nil); err == nil {
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

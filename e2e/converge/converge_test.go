// Package converge_test is `dhctl converge` of a static cluster on the rig, the real binary in
// the rig's network namespace, as an operator runs it, in one lab of five machines:
//
//   - right after a bootstrap of 1 master + 1 worker, --check finds the cluster in sync (the
//     bootstrap gave every node its group's whole template);
//   - the worker group's template changes (a label changed, one added, a taint dropped), and both
//     groups take StaticInstances (3 masters, 2 workers): --check exits 4 with the plan; converge,
//     after the join token and kubeadm's uploaded certificates are gone (as a day after the
//     bootstrap), joins two masters one at a time and a worker, Ready, with the template; the
//     first worker gets the changes, and a label an operator set stays; the API server and a
//     Service are probed all along and the failed requests reported; converge kept --config's
//     StaticInstances in the cluster, so --check without --config finds it in sync too;
//   - an etcd member down: removing masters is refused, nothing changed;
//   - back to 1 + 1: without confirmation converge refuses; a converge blocked in the worker's
//     drain by a PodDisruptionBudget holds the locks (the state dir's and the cluster's Lease),
//     so a second one refuses naming the holder; the first is SIGKILLed, the budget removed, and
//     a re-run without --config (the killed run kept it in the cluster) and without the
//     bootstrap's state dir (--ssh-host the first master: the join data and the UUID come from
//     the cluster) takes the dead run's lock over at once, removes the worker, then the masters,
//     each leaving etcd first; the machines are clean.
package converge_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/internal/lab"
	"github.com/dhctl-dev/dhctl/e2e/internal/rigtest"
	"github.com/dhctl-dev/dhctl/e2e/internal/testctx"
	"github.com/dhctl-dev/dhctl/e2e/rig"
)

const sane = "--yes-i-am-sane-and-i-understand-what-i-am-doing"

// changedTemplate is the worker group's template converge applies (the bootstrap's,
// lab.Platform's, is tier edge with a taint).
const changedTemplate = `    labels:
      dhctl.test/tier: core
      dhctl.test/zone: a
`

func TestConverge(t *testing.T) {
	ctx, cancel := testctx.New(t, 30*time.Minute)
	defer cancel()
	start := time.Now()
	l := rigtest.StartLab(ctx, t, lab.Options{Masters: 1, Workers: 1, Machines: 3})
	m := l.Machines
	worker, extra := m[1], m[4]
	base := append([]string{"converge", "--cluster-name", l.ClusterName, "--version-map-override", l.OverridePath}, l.CommonArgs()...)
	converge := func(args ...string) []string { return append(slices.Clone(base), args...) }

	out, code, took := run(ctx, t, l, l.BootstrapArgs()...)
	if code != 0 {
		t.Fatalf("bootstrap: exit %d\n%s", code, out)
	}
	t.Logf("FIGURE bootstrap, 1 master + 1 worker: %v", took.Round(100*time.Millisecond))

	// In sync right after the bootstrap, by the cluster's NodeGroups and by the configuration.
	for _, args := range [][]string{converge("--check"), converge("--check", "--config", l.ConfigPath)} {
		out, code, took := run(ctx, t, l, args...)
		if code != 0 || !strings.Contains(out, "nodes: 0 to create, 0 to update, 0 to replace, 0 to delete, 2 in sync") {
			t.Fatalf("converge %v right after the bootstrap: exit %d, want 0 and in sync", args[1:], code)
		}
		t.Logf("FIGURE converge --check of a cluster in sync (1 + 1): %v", took.Round(10*time.Millisecond))
	}

	workerNode := nodeAt(ctx, t, l, worker.Address.String())
	kubectl(ctx, t, l, "label", "node", workerNode, "ops.example.com/owner=alice")
	keyPEM, err := os.ReadFile(l.Rig.SSHKeyFile())
	if err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString(keyPEM)
	grow, err := l.WriteConfigFrom("grow.yml", staticConfig(3, 2, key, changedTemplate))
	if err != nil {
		t.Fatal(err)
	}
	shrink, err := l.WriteConfigFrom("shrink.yml", staticConfig(1, 1, key, changedTemplate))
	if err != nil {
		t.Fatal(err)
	}

	kubectl(ctx, t, l, "-n", "kube-system", "expose", "deployment", "coredns", "--name", "dns-probe", "--type", "NodePort",
		"--port", "53", "--protocol", "UDP", "--overrides", `{"spec":{"ports":[{"port":53,"protocol":"UDP","nodePort":30053}]}}`)
	p := startProbe(ctx, t, l, worker.Address.String()+":30053")

	// --check: the plan and exit 4; nothing changes.
	out, code, _ = run(ctx, t, l, converge("--check", "--config", grow)...)
	for _, want := range []string{
		"NodeGroup worker: update (spec.nodeTemplate, spec.staticInstances)",
		fmt.Sprintf("node on StaticInstance si-w2 (%s, group worker): create (join)", extra.Address),
		fmt.Sprintf("node on StaticInstance si-m2 (%s, group master): create (join)", m[2].Address),
		fmt.Sprintf("node %s (worker): update: ~label dhctl.test/tier=core (was edge), +label dhctl.test/zone=a, -taint dhctl.test/edge:PreferNoSchedule", workerNode),
		"the cluster differs from its configuration",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("converge --check of the grown configuration lacks %q", want)
		}
	}
	if code != 4 {
		t.Fatalf("converge --check with drift: exit %d, want 4", code)
	}

	// As a day after the bootstrap: no join token, no uploaded certificates.
	kubectl(ctx, t, l, "-n", "kube-system", "delete", "secret", "--field-selector", "type=bootstrap.kubernetes.io/token")
	kubectl(ctx, t, l, "-n", "kube-system", "delete", "secret", "kubeadm-certs", "--ignore-not-found")
	out, code, took = run(ctx, t, l, converge("--config", grow)...)
	if code != 0 {
		t.Fatalf("converge to 3 masters + 2 workers: exit %d", code)
	}
	t.Logf("FIGURE converge 1 + 1 -> 3 + 2 (machines prepared at once, two control-plane joins one at a time, one worker): %v", took.Round(100*time.Millisecond))
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "joined and Ready in") || strings.HasPrefix(line, "etcd: ") || strings.Contains(line, ": node bundle ") || strings.Contains(line, " prepared in ") {
			t.Logf("FIGURE step: %s", strings.TrimSpace(line))
		}
	}
	if !strings.Contains(out, "etcd: 3 members, all healthy") {
		t.Error("the converge did not report 3 healthy etcd members")
	}
	if !rigtest.DebugLogHas(l, "converge", "the join token had expired or was deleted: made a new one") {
		t.Error("the nodes joined without a new token being made")
	}
	checkNodes(ctx, t, l, 5, 3)
	extraNode := nodeAt(ctx, t, l, extra.Address.String())
	for node, want := range map[string][]string{
		extraNode:  {"node.deckhouse.io/group=worker", "dhctl.test/tier=core", "dhctl.test/zone=a"},
		workerNode: {"node.deckhouse.io/group=worker", "dhctl.test/tier=core", "dhctl.test/zone=a", "ops.example.com/owner=alice"},
	} {
		labels := kubectl(ctx, t, l, "get", "node", node, "-o", `go-template={{range $k, $v := .metadata.labels}}{{$k}}={{$v}} {{end}}`)
		for _, w := range want {
			if !strings.Contains(" "+labels+" ", " "+w+" ") {
				t.Errorf("node %s lacks label %s: %s", node, w, labels)
			}
		}
		if taints := kubectl(ctx, t, l, "get", "node", node, "-o", "jsonpath={.spec.taints}"); strings.Contains(taints, "dhctl.test/edge") {
			t.Errorf("node %s keeps the taint the template dropped: %s", node, taints)
		}
	}

	for range 3 {
		out, code, took = run(ctx, t, l, converge("--check", "--config", grow)...)
		if code != 0 || !strings.Contains(out, "5 in sync") {
			t.Fatalf("converge --check of 3 + 2: exit %d, want 0 and 5 nodes in sync", code)
		}
		t.Logf("FIGURE converge --check with no changes, 3 masters + 2 workers: %v", took.Round(10*time.Millisecond))
	}
	out, code, took = run(ctx, t, l, converge("--config", grow)...)
	if code != 0 || !strings.Contains(out, "0 node(s) updated") {
		t.Fatalf("converge with no changes: exit %d", code)
	}
	t.Logf("FIGURE converge with no changes (lock, plan, status), 3 masters + 2 workers: %v", took.Round(10*time.Millisecond))
	// Without --config: the NodeGroups and the StaticInstances the cluster keeps (the converges
	// above put --config's there), all in sync.
	if out, code, _ := run(ctx, t, l, converge("--check")...); code != 0 || !strings.Contains(out, "5 in sync") || strings.Contains(out, "neither --config nor the cluster") {
		t.Errorf("converge --check without --config of 3 + 2: exit %d, want 0 with the cluster's StaticInstances known", code)
	}

	// An etcd member down (its static pod's manifest moved away): removing masters is refused.
	third := m[3]
	rigtest.MustRun(ctx, t, third, "mv /etc/kubernetes/manifests/etcd.yaml /root/etcd.yaml && echo moved", "moved")
	rigtest.WaitFor(ctx, t, 2*time.Minute, "etcd stopped on "+third.Address.String(), func() (bool, string) {
		out, _ := third.Run(ctx, "crictl ps --name etcd -q | wc -l", nil)
		return strings.TrimSpace(out) == "0", "etcd containers: " + out
	})
	out, code, _ = run(ctx, t, l, converge("--config", shrink, sane)...)
	if code == 0 || !strings.Contains(out, "the control plane is not healthy") || !strings.Contains(out, "could lose its quorum; nothing was changed") {
		t.Fatalf("removing a master while another etcd member is down: exit %d, want a refusal naming etcd's health", code)
	}
	if got := kubectl(ctx, t, l, "get", "nodes", "-o", "name"); strings.Count(got, "node/") != 5 {
		t.Fatalf("the refused converge removed a node: %s", got)
	}
	rigtest.MustRun(ctx, t, third, "mv /root/etcd.yaml /etc/kubernetes/manifests/etcd.yaml && echo back", "back")
	rigtest.WaitFor(ctx, t, 2*time.Minute, "etcd running again on "+third.Address.String(), func() (bool, string) {
		out, _ := third.Run(ctx, "crictl ps --name etcd --state running -q | wc -l", nil)
		if strings.TrimSpace(out) == "1" {
			return true, ""
		}
		// Why not, should the wait fail: etcd's containers and pods, its last log lines, the
		// kubelet's.
		why, _ := third.Run(ctx, "crictl ps -a --name etcd; crictl pods --name etcd; id=$(crictl ps -a --name etcd -q | head -n1); "+
			"[ -n \"$id\" ] && crictl logs --tail 15 \"$id\" 2>&1; journalctl -u kubelet --no-pager -n 15 2>&1 | cut -c1-300", nil)
		return false, "running etcd containers: " + out + why
	})

	// A pod only the second worker may run, its budget allowing no disruption: the drain waits.
	pinned := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: pinned, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: pinned}}
  template:
    metadata: {labels: {app: pinned}}
    spec:
      nodeSelector: {kubernetes.io/hostname: %s}
      containers: [{name: pause, image: %s}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: pinned, namespace: default}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: pinned}}
`, extraNode, l.Published.Images["pause"].Ref)
	path := filepath.Join(l.Dir, "pinned.yml")
	if err := os.WriteFile(path, []byte(pinned), 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl(ctx, t, l, "apply", "-f", path)
	kubectl(ctx, t, l, "-n", "default", "rollout", "status", "deployment/pinned", "--timeout=3m")

	// Without confirmation (no terminal: stdin is empty) nothing changes.
	out, code, _ = run(ctx, t, l, converge("--config", shrink)...)
	if code != 3 || !strings.Contains(out, "DESTRUCTIVE") || !strings.Contains(out, "StaticInstance si-w2") || !strings.Contains(out, "converge not confirmed") {
		t.Fatalf("unconfirmed removal: exit %d, want 3 showing the destructive changes", code)
	}
	if u := kubectl(ctx, t, l, "get", "node", extraNode, "-o", "jsonpath={.spec.unschedulable}"); u == "true" {
		t.Fatal("the unconfirmed converge cordoned the node")
	}

	// Confirmed, it holds the locks while the budget blocks its drain: a second converge refuses.
	var firstOut bytes.Buffer
	first := l.Command(ctx, converge("--config", shrink, sane, "--drain-timeout", "5m")...)
	first.Stdout, first.Stderr = &firstOut, &firstOut
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	rigtest.WaitFor(ctx, t, 2*time.Minute, "the worker being removed cordoned", func() (bool, string) {
		u, _ := l.Kubectl(ctx, "get", "node", extraNode, "-o", "jsonpath={.spec.unschedulable}")
		return u == "true", "unschedulable=" + u
	})
	// From this machine the state dir's own lock refuses first; from another (no state dir,
	// its kubeconfig) the cluster's Lease does, naming the holder.
	out, code, _ = run(ctx, t, l, converge("--config", shrink, sane)...)
	if code != 1 || !strings.Contains(out, "is locked by pid") || !strings.Contains(out, "another dhctl is working on this cluster") {
		t.Errorf("a second converge during the first, same state dir: exit %d, want 1 naming the process", code)
	}
	out, code, _ = run(ctx, t, l, "converge", "--kubeconfig", l.Kubeconfig(), "--config", shrink, sane)
	if code != 1 || !strings.Contains(out, "the cluster is locked by") || !strings.Contains(out, "(converge)") {
		t.Errorf("a second converge during the first, from elsewhere: exit %d, want 1 naming the Lease's holder", code)
	}
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	t.Logf("the converge killed while draining said:\n%s", firstOut.String())

	kubectl(ctx, t, l, "-n", "default", "delete", "pdb", "pinned")
	// The run after the kill is given no --config: the killed run kept shrink's configuration and
	// NodeGroups in the cluster, and the StaticInstances are there since the grow. Nor is it
	// given the bootstrap's state dir (another operator's machine): only --ssh-host, the first
	// master, from which the join data come; the UUID is the cluster's.
	elsewhere := filepath.Join(l.Dir, "elsewhere")
	withoutState := slices.Clone(base)
	withoutState[slices.Index(withoutState, l.StateDir)] = elsewhere
	out, code, _ = run(ctx, t, l, append(slices.Clone(withoutState), sane)...)
	if code != 2 || !strings.Contains(out, "give --ssh-host the cluster's first master") {
		t.Errorf("converge from an empty state dir without --ssh-host: exit %d, want 2 saying what to give", code)
	}
	out, code, took = run(ctx, t, l, append(withoutState, sane, "--ssh-host", m[0].Address.String())...)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("node %s removed; machine %s cleaned", extraNode, extra.Address)) ||
		!strings.Contains(out, "the state dir had no join data: read from the first master "+m[0].Address.String()) {
		t.Fatalf("converge 3 + 2 -> 1 + 1 after the kill, from another state dir: exit %d, want 0 removing %s first", code, extraNode)
	}
	uuid := func(dir string) string {
		data, err := os.ReadFile(filepath.Join(dir, l.ClusterName, "cluster-uuid"))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	if uuid(elsewhere) != uuid(l.StateDir) {
		t.Errorf("the other state dir has cluster UUID %q, the bootstrap's %q", uuid(elsewhere), uuid(l.StateDir))
	}
	t.Logf("FIGURE converge 3 + 2 -> 1 + 1 after a kill (the worker, then two masters leaving etcd one at a time): %v", took.Round(100*time.Millisecond))
	if strings.Count(out, "members, all healthy)") != 2 || !strings.Contains(out, "etcd: 1 members, all healthy") {
		t.Error("the masters did not leave etcd one at a time down to 1 member")
	}
	checkNodes(ctx, t, l, 2, 1)
	for _, gone := range []*rig.Machine{m[2], m[3], m[4]} {
		rigtest.CheckClean(ctx, t, gone, "converge removing its node")
	}
	if labels := kubectl(ctx, t, l, "get", "node", workerNode, "-o", "jsonpath={.metadata.labels}"); !strings.Contains(labels, "alice") {
		t.Errorf("the operator's label is gone from %s: %s", workerNode, labels)
	}
	if out, code, _ := run(ctx, t, l, converge("--check", "--config", shrink)...); code != 0 {
		t.Errorf("converge --check of 1 + 1: exit %d\n%s", code, out)
	}
	total, failed, longest := p.stop()
	t.Logf("FIGURE availability during the scaling: %d requests (API server and a Service), %d failed, longest outage %v", total, failed, longest.Round(100*time.Millisecond))
	if total == 0 || longest > 30*time.Second {
		t.Errorf("the API server or the Service stopped answering for %v (%d of %d requests failed)", longest, failed, total)
	}
	t.Logf("FIGURE whole converge test: %v", time.Since(start).Round(time.Second))
}

// nodeAt is the name of the node whose InternalIP is ip.
func nodeAt(ctx context.Context, t *testing.T, l *lab.Lab, ip string) string {
	t.Helper()
	out := kubectl(ctx, t, l, "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}{" "}{.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}`)
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[1] == ip {
			return f[0]
		}
	}
	t.Fatalf("no node has InternalIP %s:\n%s", ip, out)
	return ""
}

func kubectl(ctx context.Context, t *testing.T, l *lab.Lab, args ...string) string {
	t.Helper()
	out, err := l.Kubectl(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// run runs dhctl with args and returns its combined output and exit code, logging both.
func run(ctx context.Context, t *testing.T, l *lab.Lab, args ...string) (string, int, time.Duration) {
	t.Helper()
	out, code, took := rigtest.Run(t, l.Command(ctx, args...))
	t.Logf("dhctl %s: exit %d in %v\n%s", strings.Join(args[:min(2, len(args))], " "), code, took.Round(10*time.Millisecond), out)
	return out, code, took
}

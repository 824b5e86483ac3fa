// Package converge_test is `dhctl converge` of a static cluster on the rig, the real binary in
// the rig's network namespace, as an operator runs it:
//
//   - right after a bootstrap of 1 master + 1 worker, --check finds the cluster in sync (the
//     bootstrap gave every node its group's whole template);
//   - the worker group's template changes (a label changed, one added, a taint dropped) and it
//     takes StaticInstances: --check exits 4 with the plan; converge, after the join token is gone
//     (as 24 h after a bootstrap), joins the third machine with a new token, Ready, with the
//     template; the worker gets the changes, and a label an operator set stays;
//   - the count goes down: without confirmation converge refuses and changes nothing; a
//     converge blocked in the drain by a PodDisruptionBudget holds the locks (the state dir's
//     and the cluster's Lease), so a second one refuses naming the holder; the first is SIGKILLed, the budget removed, and a re-run takes the dead
//     run's lock over at once, drains, cleans the machine and deletes its node.
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
)

const sane = "--yes-i-am-sane-and-i-understand-what-i-am-doing"

// grownConfig is the lab's cluster with a changed worker group that takes count of the two
// StaticInstances (the worker the bootstrap joined, and the third machine).
func grownConfig(count int, key string) string {
	return lab.StaticCluster + fmt.Sprintf(`---
apiVersion: deckhouse.io/v1
kind: NodeGroup
metadata:
  name: worker
spec:
  nodeType: Static
  staticInstances:
    count: %d
    labelSelector:
      matchLabels: {role: worker}
  nodeTemplate:
    labels:
      dhctl.test/tier: core
      dhctl.test/zone: a
---
apiVersion: deckhouse.io/v1alpha1
kind: SSHCredentials
metadata:
  name: rig-root
spec:
  user: root
  privateSSHKey: %s
---
apiVersion: deckhouse.io/v1alpha1
kind: StaticInstance
metadata:
  name: si-a
  labels: {role: worker}
spec:
  address: "{{index .Addresses 1}}"
  credentialsRef: {kind: SSHCredentials, name: rig-root}
---
apiVersion: deckhouse.io/v1alpha1
kind: StaticInstance
metadata:
  name: si-b
  labels: {role: worker}
spec:
  address: "{{index .Addresses 2}}"
  credentialsRef: {kind: SSHCredentials, name: rig-root}
`, count, key) + lab.CNI + lab.DeckhouseModuleConfig + lab.KubeProxy
}

func TestConverge(t *testing.T) {
	ctx, cancel := testctx.New(t, 25*time.Minute)
	defer cancel()
	start := time.Now()
	l := rigtest.StartLab(ctx, t, lab.Options{Masters: 1, Workers: 1, Machines: 1})
	worker, extra := l.Workers[0], l.Machines[2]
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
		if code != 0 || !strings.Contains(out, "nodes: 0 to create, 0 to update, 0 to delete, 2 in sync") {
			t.Fatalf("converge %v right after the bootstrap: exit %d, want 0 and in sync", args[1:], code)
		}
		t.Logf("FIGURE converge --check of a cluster in sync (1 + 1): %v", took.Round(10*time.Millisecond))
	}

	workerNode := nodeAt(ctx, t, l, worker.Address.String())
	if out, err := l.Kubectl(ctx, "label", "node", workerNode, "ops.example.com/owner=alice"); err != nil {
		t.Fatalf("an operator's label: %v\n%s", err, out)
	}
	if out, err := l.Kubectl(ctx, "-n", "kube-system", "delete", "secret", "--field-selector", "type=bootstrap.kubernetes.io/token"); err != nil || !strings.Contains(out, "deleted") {
		t.Fatalf("deleting the join token: %v\n%s", err, out)
	}
	keyPEM, err := os.ReadFile(l.Rig.SSHKeyFile())
	if err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString(keyPEM)
	grow, err := l.WriteConfigFrom("grow.yml", grownConfig(2, key))
	if err != nil {
		t.Fatal(err)
	}

	// --check: the plan and exit 4; nothing changes.
	out, code, _ = run(ctx, t, l, converge("--check", "--config", grow)...)
	for _, want := range []string{
		"NodeGroup worker: update (spec.nodeTemplate, spec.staticInstances)",
		fmt.Sprintf("node on StaticInstance si-b (%s, group worker): create (join)", extra.Address),
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

	_, code, took = run(ctx, t, l, converge("--config", grow)...)
	if code != 0 {
		t.Fatalf("converge adding si-b: exit %d", code)
	}
	t.Logf("FIGURE converge joining one static node (and updating one): %v", took.Round(100*time.Millisecond))
	if !rigtest.DebugLogHas(l, "converge", "the join token had expired or was deleted: made a new one") {
		t.Error("the static node joined without a new token being made")
	}
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
	if ready := kubectl(ctx, t, l, "get", "node", extraNode, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`); ready != "True" {
		t.Errorf("the joined node is not Ready: %q", ready)
	}
	if out, code, _ := run(ctx, t, l, converge("--check", "--config", grow)...); code != 0 || !strings.Contains(out, "nodes: 0 to create, 0 to update, 0 to delete, 3 in sync") {
		t.Errorf("converge --check after the converge: exit %d, want 0 and 3 nodes in sync", code)
	}

	// A pod only the third node may run, its budget allowing no disruption: the drain waits.
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

	shrink, err := l.WriteConfigFrom("shrink.yml", grownConfig(1, key))
	if err != nil {
		t.Fatal(err)
	}
	// Without confirmation (no terminal: stdin is empty) nothing changes.
	out, code, _ = run(ctx, t, l, converge("--config", shrink)...)
	if code != 3 || !strings.Contains(out, "DESTRUCTIVE") || !strings.Contains(out, "StaticInstance si-b") || !strings.Contains(out, "converge not confirmed") {
		t.Fatalf("unconfirmed removal: exit %d, want 3 showing the destructive change", code)
	}
	if u := kubectl(ctx, t, l, "get", "node", extraNode, "-o", "jsonpath={.spec.unschedulable}"); u == "true" {
		t.Fatal("the unconfirmed converge cordoned the node")
	}

	// Confirmed, it holds the lock while the budget blocks its drain: a second converge refuses.
	var firstOut bytes.Buffer
	first := l.Command(ctx, converge("--config", shrink, sane, "--drain-timeout", "5m")...)
	first.Stdout, first.Stderr = &firstOut, &firstOut
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	rigtest.WaitFor(ctx, t, 2*time.Minute, "the node being removed cordoned", func() (bool, string) {
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
	out, code, took = run(ctx, t, l, converge("--config", shrink, sane)...)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("node %s removed; machine %s cleaned", extraNode, extra.Address)) {
		t.Fatalf("converge after the kill: exit %d, want 0 removing %s", code, extraNode)
	}
	t.Logf("FIGURE converge removing one static node (after a kill): %v", took.Round(100*time.Millisecond))
	if nodes := kubectl(ctx, t, l, "get", "nodes", "-o", "name"); strings.Count(nodes, "node/") != 2 || strings.Contains(nodes, extraNode) {
		t.Errorf("nodes after the removal: %s", nodes)
	}
	rigtest.CheckClean(ctx, t, extra, "converge removing its node")
	if labels := kubectl(ctx, t, l, "get", "node", workerNode, "-o", "jsonpath={.metadata.labels}"); !strings.Contains(labels, "alice") {
		t.Errorf("the operator's label is gone from %s: %s", workerNode, labels)
	}
	if out, code, _ := run(ctx, t, l, converge("--check", "--config", shrink)...); code != 0 {
		t.Errorf("converge --check after the removal: exit %d, want 0\n%s", code, out)
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

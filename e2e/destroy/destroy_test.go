// Package destroy_test is `dhctl destroy` of a static cluster on the rig, the real binary in the
// rig's network namespace, as an operator runs it:
//
//   - a cluster of 1 master + 1 worker, with a PodDisruptionBudget, a Service of type
//     LoadBalancer and a PersistentVolumeClaim in it; destroy without confirmation changes
//     nothing, from the bootstrap's state dir as from an empty one (--ssh-host the first
//     master: the cluster read from it);
//   - destroy, SIGKILLed once it cleans the nodes, then run again: it finishes; nothing of the
//     cluster is left on either machine (the checks abort's test makes), the state dir forgets
//     the cluster, and a destroy once more says it is already destroyed;
//   - the machines are reusable: a fresh bootstrap of the master on them, then, once its join
//     token is gone (as 24 h after a bootstrap), a run adding the worker: it joins with a new
//     token and both nodes are Ready;
//   - its first master then powered off: destroy cleans the worker from what the state dir
//     records, names the master it could not reach and exits non-zero; from an empty state
//     dir, --ssh-host the cleaned worker: no cluster there, it is cleaned as given.
package destroy_test

import (
	"context"
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

// objects are what keep cloud resources alive in a real cluster, and what destroy deletes first.
const objects = `apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: keep-one, namespace: default}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: v1
kind: Service
metadata: {name: web-lb, namespace: default}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
`

const sane = "--yes-i-am-sane-and-i-understand-what-i-am-doing"

func TestDestroy(t *testing.T) {
	ctx, cancel := testctx.New(t, 20*time.Minute)
	defer cancel()
	start := time.Now()
	l := rigtest.StartLab(ctx, t, lab.Options{Masters: 1, Workers: 1})
	master, worker := l.Masters[0], l.Workers[0]
	destroy := append([]string{"destroy", "--cluster-name", l.ClusterName}, l.CommonArgs()...)
	clusterState := filepath.Join(l.StateDir, l.ClusterName)

	bootstrap(ctx, t, l, "bootstrap")
	path := filepath.Join(l.Dir, "objects.yml")
	if err := os.WriteFile(path, []byte(objects), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := l.Kubectl(ctx, "apply", "-f", path); err != nil {
		t.Fatalf("making the objects destroy deletes: %v\n%s", err, out)
	}

	// Without confirmation (no terminal: stdin is empty) nothing changes.
	out, code, _ := run(ctx, t, l, destroy...)
	if code != 3 || !strings.Contains(out, "destroy not confirmed") {
		t.Fatalf("unconfirmed destroy: exit %d, want 3 saying it was not confirmed", code)
	}
	for _, want := range []string{"node " + master.Address.String(), "node " + worker.Address.String(), "PodDisruptionBudgets"} {
		if !strings.Contains(out, want) {
			t.Errorf("the confirmation does not show %q among what destroy removes", want)
		}
	}
	// The same from another machine's empty state dir, --ssh-host the first master: the cluster
	// is read from it (join data, UUID), its API server reached, and the worker found among
	// its nodes; unconfirmed, nothing changes in the cluster.
	elsewhere := slices.Clone(destroy)
	elsewhere[slices.Index(elsewhere, l.StateDir)] = filepath.Join(l.Dir, "elsewhere")
	out, code, _ = run(ctx, t, l, append(slices.Clone(elsewhere), "--ssh-host", master.Address.String())...)
	if code != 3 || !strings.Contains(out, "the state dir had no join data: read from the first master "+master.Address.String()) ||
		!strings.Contains(out, "node "+worker.Address.String()) || !strings.Contains(out, "PodDisruptionBudgets") {
		t.Fatalf("unconfirmed destroy from an empty state dir: exit %d, want 3 with the cluster read from the first master, the worker among its nodes and the objects to delete", code)
	}
	rigtest.MustRun(ctx, t, worker, "systemctl is-active kubelet", "active")
	if out, err := l.Kubectl(ctx, "get", "pdb,svc,pvc", "-n", "default", "-o", "name"); err != nil || !strings.Contains(out, "service/web-lb") {
		t.Fatalf("the cluster's objects after the unconfirmed destroy: %v\n%s", err, out)
	}

	// SIGKILLed once the nodes are being cleaned (kubelet stopped on a node), then again.
	confirmed := append(slices.Clone(destroy), sane)
	out = rigtest.KillWhen(t, l.Command(ctx, confirmed...), "a node's cleanup began", 0, func() bool {
		for _, m := range []*rig.Machine{master, worker} {
			if out, err := m.Run(ctx, "systemctl is-active kubelet || true", nil); err == nil && strings.TrimSpace(out) != "active" {
				return true
			}
		}
		return false
	})
	for _, want := range []string{"deleted the platform controller", "deleted PodDisruptionBudgets", "deleted Services of type LoadBalancer", "deleted PersistentVolumeClaims"} {
		if !strings.Contains(out, want) {
			t.Errorf("the killed destroy had not said %q before it cleaned the nodes", want)
		}
	}
	out, code, took := run(ctx, t, l, confirmed...)
	if code != 0 {
		t.Fatalf("destroy after a kill during the nodes' cleanup: exit %d", code)
	}
	t.Logf("FIGURE destroy after a kill during the nodes' cleanup: %v", took.Round(100*time.Millisecond))
	// The killed run's cleanup may still be tearing the control plane down: the re-run must not
	// depend on its API server (it deleted the objects already).
	if !strings.Contains(out, "the cluster's objects were deleted by an earlier destroy") || strings.Contains(out, "deleting what=") {
		t.Errorf("the destroy after the kill went to the API server again, though the killed run had deleted the objects")
	}
	for _, m := range []*rig.Machine{master, worker} {
		if !strings.Contains(out, m.Address.String()+": cleaned") {
			t.Errorf("the destroy after the kill does not report %s cleaned", m.Address)
		}
		rigtest.CheckClean(ctx, t, m, "destroy")
	}
	for _, gone := range []string{"checkpoints", "node", "kubeconfig"} {
		if _, err := os.Stat(filepath.Join(clusterState, gone)); !os.IsNotExist(err) {
			t.Errorf("the state dir still holds %s after destroy (%v)", gone, err)
		}
	}
	if out, code, _ := run(ctx, t, l, confirmed...); code != 0 || !strings.Contains(out, "already destroyed") {
		t.Errorf("destroy of the destroyed cluster: exit %d, want 0 saying it is already destroyed", code)
	}

	// The machines are reusable: a fresh bootstrap on them, the master first. Its join token
	// then goes (as the token cleaner removes it 24 h on), and the worker added by the next run
	// still joins, with a new one.
	var masterOnly []string
	for _, a := range l.BootstrapArgs() {
		if len(masterOnly) > 0 && masterOnly[len(masterOnly)-1] == "--worker-host" {
			masterOnly = masterOnly[:len(masterOnly)-1]
			continue
		}
		masterOnly = append(masterOnly, a)
	}
	_, code, took = run(ctx, t, l, masterOnly...)
	if code != 0 {
		t.Fatalf("fresh bootstrap of the master alone on the destroyed cluster's machine: exit %d", code)
	}
	t.Logf("FIGURE fresh bootstrap of the master alone: %v", took.Round(100*time.Millisecond))
	if out, err := l.Kubectl(ctx, "-n", "kube-system", "delete", "secret", "--field-selector", "type=bootstrap.kubernetes.io/token"); err != nil || !strings.Contains(out, "deleted") {
		t.Fatalf("deleting the join token: %v\n%s", err, out)
	}
	bootstrap(ctx, t, l, "bootstrap adding the worker after the join token is gone")
	if !rigtest.DebugLogHas(l, "bootstrap", "the join token had expired or was deleted: made a new one") {
		t.Errorf("the worker joined without a new token being made")
	}

	// The first master is gone: the worker is cleaned all the same, the master named.
	if err := master.PowerOff(); err != nil {
		t.Fatal(err)
	}
	out, code, took = run(ctx, t, l, append(slices.Clone(confirmed), "--ssh-connect-timeout", "5s")...)
	if code == 0 || !strings.Contains(out, worker.Address.String()+": cleaned") || !strings.Contains(out, master.Address.String()+": unreachable") {
		t.Errorf("destroy without its first master: exit %d, want non-zero with %s cleaned and %s unreachable", code, worker.Address, master.Address)
	}
	t.Logf("FIGURE destroy with the first master powered off: %v", took.Round(100*time.Millisecond))
	rigtest.CheckClean(ctx, t, worker, "destroy without the first master")
	// From an empty state dir, --ssh-host a cleaned machine: no cluster to read there, the
	// machine is cleaned (again) as given.
	elsewhere = slices.Clone(confirmed)
	elsewhere[slices.Index(elsewhere, l.StateDir)] = filepath.Join(l.Dir, "elsewhere-2")
	out, code, _ = run(ctx, t, l, append(elsewhere, "--ssh-host", worker.Address.String())...)
	if code != 0 || !strings.Contains(out, worker.Address.String()+" holds no cluster") || !strings.Contains(out, worker.Address.String()+": cleaned") {
		t.Errorf("destroy of a cleaned machine from an empty state dir: exit %d, want 0 saying it holds no cluster, and it cleaned", code)
	}
	if data, err := os.ReadFile(filepath.Join(clusterState, "node", "hosts.json")); err != nil || !strings.Contains(string(data), master.Address.String()) || strings.Contains(string(data), `"`+worker.Address.String()) {
		t.Errorf("after the partial destroy the state dir records %q (%v); want only the master %s, for the next run", data, err, master.Address)
	}
	t.Logf("FIGURE whole destroy test: %v", time.Since(start).Round(time.Second))
}

// bootstrap bootstraps the lab and waits for both nodes to be Ready.
func bootstrap(ctx context.Context, t *testing.T, l *lab.Lab, what string) {
	t.Helper()
	out, code, took := run(ctx, t, l, l.BootstrapArgs()...)
	if code != 0 {
		t.Fatalf("%s: exit %d\n%s", what, code, out)
	}
	t.Logf("FIGURE %s, 1 master + 1 worker: %v", what, took.Round(100*time.Millisecond))
	if out, err := l.Kubectl(ctx, "wait", "--for=condition=Ready", "node", "--all", "--timeout=2m"); err != nil {
		t.Fatalf("%s: nodes not Ready: %v\n%s", what, err, out)
	}
	if out, err := l.Kubectl(ctx, "get", "nodes", "-o", "name"); err != nil || strings.Count(out, "node/") != 2 {
		t.Fatalf("%s: nodes %q (%v), want 2", what, out, err)
	}
}

// run runs dhctl with args and returns its combined output and exit code, logging both.
func run(ctx context.Context, t *testing.T, l *lab.Lab, args ...string) (string, int, time.Duration) {
	t.Helper()
	out, code, took := rigtest.Run(t, l.Command(ctx, args...))
	t.Logf("dhctl %s: exit %d in %v\n%s", args[0], code, took.Round(10*time.Millisecond), out)
	return out, code, took
}

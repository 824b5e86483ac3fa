// Package bootstrap_test is `dhctl bootstrap` on the rig, run as a user runs it (the real binary
// in the rig's network namespace, against nspawn machines and the rig's registry):
//
//   - TestBootstrap: 1 master + 1 worker → every node Ready, then a conformance-style smoke (a
//     2-replica Deployment spread over both nodes, a Service reached from a pod by its DNS name,
//     kubectl logs and exec); a second run skips every finished phase.
//   - TestBootstrapKilled: dhctl killed with SIGKILL inside three different phases, re-run each
//     time; the last run succeeds and the cluster holds exactly what a clean run makes.
package bootstrap_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/internal/lab"
	"github.com/dhctl-dev/dhctl/e2e/internal/rigtest"
	"github.com/dhctl-dev/dhctl/e2e/rig"
)

// run runs dhctl to its end, logging its output and what it cost: wall time, and from GNU time
// (which forks dhctl itself, so the peak RSS is dhctl's alone) peak RSS and CPU time.
func run(ctx context.Context, t *testing.T, l *lab.Lab, args ...string) (string, time.Duration, error) {
	t.Helper()
	gnuTime := ensureGNUTime(ctx, t)
	cmd := l.Command(ctx, args...)
	// nsenter --net=NS /usr/bin/time -f ... dhctl ARGS
	cmd.Args = append([]string{cmd.Args[0], cmd.Args[1], gnuTime, "-f", "dhctl-cost: peak RSS %M KiB, CPU user %U s, system %S s"}, cmd.Args[2:]...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		// The end of the output (the failed phase, its host and step, the remote lines) first:
		// a report that keeps only the head of a failed test's log still shows why.
		lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		t.Logf("dhctl %s FAILED (%v in %v); its last lines:\n%s", args[0], err, took.Round(10*time.Millisecond),
			strings.Join(lines[max(0, len(lines)-60):], "\n"))
	}
	t.Logf("dhctl %s: %v in %v\n%s", args[0], err, took.Round(10*time.Millisecond), out)
	return string(out), took, err
}

// ensureGNUTime finds /usr/bin/time, installing Debian's time package when it is missing.
func ensureGNUTime(ctx context.Context, t *testing.T) string {
	t.Helper()
	const path = "/usr/bin/time"
	if _, err := os.Stat(path); err == nil {
		return path
	}
	out, err := exec.CommandContext(ctx, "apt-get", "install", "-y", "time").CombinedOutput()
	if err != nil {
		t.Fatalf("installing GNU time (apt-get install -y time): %v\n%s", err, out)
	}
	return path
}

func TestBootstrap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	l := rigtest.StartLab(ctx, t, lab.Options{Masters: 1, Workers: 1})
	egress, sentBefore := countEgress(ctx, t, l)

	out, took, err := run(ctx, t, l, l.BootstrapArgs()...)
	if err != nil {
		t.Fatalf("dhctl bootstrap: %v", err)
	}
	t.Logf("FIGURE bootstrap 1 master + 1 worker, command start to all nodes Ready: %v", took.Round(100*time.Millisecond))
	logCriticalPath(ctx, t, l, took, logStepTimes(t, l))
	logPodTimeline(ctx, t, l)
	for _, want := range []string{"Admin kubeconfig: " + l.Kubeconfig(), "wait-cluster", l.Masters[0].Name, l.Workers[0].Name} {
		if !strings.Contains(out, want) {
			t.Errorf("the summary lacks %q", want)
		}
	}
	checkCluster(ctx, t, l)
	smoke(ctx, t, l)
	checkOnlyTheMirror(ctx, t, l, egress, sentBefore)

	// The bootstrap recorded the machines it touched and that it finished: abort finds both hosts
	// on its own and refuses to tear a finished cluster down without its explicit flag.
	hosts, err := os.ReadFile(filepath.Join(l.StateDir, "lab", "node", "hosts.json"))
	if err != nil {
		t.Errorf("abort's record of touched hosts: %v", err)
	}
	for _, m := range append(append([]*rig.Machine(nil), l.Masters...), l.Workers...) {
		if !strings.Contains(string(hosts), m.Address.String()) {
			t.Errorf("node/hosts.json lacks %s:\n%s", m.Address, hosts)
		}
	}
	abortCmd := l.Command(ctx, "bootstrap-phase", "abort", "--state-dir", l.StateDir, "--cluster-name", "lab",
		"--ssh-user", "root", "--ssh-agent-private-keys", l.Rig.SSHKeyFile(), "--ssh-known-hosts", l.KnownHosts,
		"--yes-i-am-sane-and-i-understand-what-i-am-doing")
	abortOut, abortErr := abortCmd.CombinedOutput()
	if code := exitCode(abortErr); code != 2 || !strings.Contains(string(abortOut), "--force-abort-finished-cluster") {
		t.Errorf("abort of the finished cluster: exit %d, want 2 naming --force-abort-finished-cluster:\n%s", code, abortOut)
	}

	// The same command again: everything is done, nothing is redone.
	out, took, err = run(ctx, t, l, l.BootstrapArgs()...)
	if err != nil {
		t.Fatalf("second dhctl bootstrap: %v", err)
	}
	for _, p := range []string{"first-master", "grow/install/cni", "grow/nodes/workers"} {
		if !strings.Contains(out, p) || !summaryStatus(out, p, "skipped-checkpoint") {
			t.Errorf("re-run: phase %s not skipped as done:\n%s", p, out)
		}
	}
	t.Logf("FIGURE bootstrap re-run on the finished cluster: %v", took.Round(100*time.Millisecond))

	// New inputs: --resources and a post-bootstrap script. Exactly their phases run.
	resources := filepath.Join(l.Dir, "resources.yml")
	script := filepath.Join(l.Dir, "post.sh")
	if err := os.WriteFile(resources, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-resources, namespace: default}\ndata: {k: v}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte("#!/bin/bash\nset -e\nhostname > /root/post-bootstrap-ran\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	out, _, err = run(ctx, t, l, append(l.BootstrapArgs(), "--resources", resources, "--post-bootstrap-script-path", script)...)
	if err != nil {
		t.Fatalf("dhctl bootstrap with --resources and a post-bootstrap script: %v", err)
	}
	for p, want := range map[string]string{"preflight": "skipped-checkpoint", "first-master": "skipped-checkpoint", "grow/install/platform": "skipped-checkpoint",
		"grow/nodes/workers": "skipped-checkpoint", "create-resources": "ran", "post-bootstrap-script": "ran"} {
		if !summaryStatus(out, p, want) {
			t.Errorf("with new --resources and script: phase %s is not %s", p, want)
		}
	}
	if got := must(l.Kubectl(ctx, "get", "configmap", "from-resources", "-o", "jsonpath={.data.k}")); got != "v" {
		t.Errorf("the --resources ConfigMap: %q", got)
	}
	if got, err := l.Masters[0].Run(ctx, "cat /root/post-bootstrap-ran", nil); err != nil || strings.TrimSpace(got) != l.Masters[0].Name {
		t.Errorf("the post-bootstrap script did not run on the first master: %q %v", got, err)
	}
}

// probeAddress is TEST-NET-1 (RFC 5737): an address nobody answers, reached without a name.
const probeAddress = "192.0.2.1"

// countEgress counts (and drops) every packet a machine sends beyond the rig (anything but the
// other machines, the registry that is the cluster's mirror, and the operator's side), and proves
// the counters work with one probe packet from a machine. It returns the count after the probe.
func countEgress(ctx context.Context, t *testing.T, l *lab.Lab) (*rig.Egress, int64) {
	t.Helper()
	egress, err := l.Rig.CountEgress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Workers[0].Run(ctx, "timeout 3 bash -c 'echo > /dev/tcp/"+probeAddress+"/443' || true", nil); err != nil {
		t.Fatal(err)
	}
	n, addrs, err := egress.Packets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n < 1 || !slices.Contains(addrs, probeAddress) {
		t.Fatalf("the egress counters missed a machine's packet to %s: %d packets, to %v", probeAddress, n, addrs)
	}
	return egress, n
}

// checkOnlyTheMirror checks that the bootstrap was air-gapped: no machine sent a packet beyond
// the rig, and every image on every node came from the mirror.
func checkOnlyTheMirror(ctx context.Context, t *testing.T, l *lab.Lab, egress *rig.Egress, before int64) {
	t.Helper()
	n, addrs, err := egress.Packets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	addrs = slices.DeleteFunc(addrs, func(a string) bool { return a == probeAddress })
	if n != before || len(addrs) > 0 {
		t.Errorf("machines sent %d packet(s) beyond the rig during the bootstrap, to %v: the nodes must need nothing but the mirror", n-before, addrs)
	}
	images := 0
	for _, m := range l.Machines {
		out, err := m.Run(ctx, "crictl images -o json", nil)
		if err != nil {
			t.Errorf("%s: crictl images: %v", m.Name, err)
			continue
		}
		var list struct {
			Images []struct {
				RepoTags    []string `json:"repoTags"`
				RepoDigests []string `json:"repoDigests"`
			} `json:"images"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Errorf("%s: crictl images: %v\n%s", m.Name, err, out)
			continue
		}
		for _, img := range list.Images {
			images++
			for _, ref := range append(img.RepoTags, img.RepoDigests...) {
				if !strings.HasPrefix(ref, l.ImagesRepo+"/") {
					t.Errorf("%s has the image %s, which is not from the mirror %s", m.Name, ref, l.ImagesRepo)
				}
			}
		}
	}
	t.Logf("FIGURE air-gap: %d packet(s) beyond the rig during the bootstrap; %d image(s) on %d node(s), all from %s", n-before, images, len(l.Machines), l.ImagesRepo)
}

// summaryStatus reports whether the summary's phase table shows phase with status.
func summaryStatus(out, phase, status string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == phase && f[1] == status {
			return true
		}
	}
	return false
}

func TestBootstrapKilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	l := rigtest.StartLab(ctx, t, lab.Options{Masters: 1, Workers: 1})
	args := append(l.BootstrapArgs(), "--log-format", "json")
	// Inside each phase, while it works on the machines: a moment after the phase (or, with a
	// marker, a log line of it) started.
	for _, at := range []struct {
		phase, marker string
		after         time.Duration
	}{
		{"first-master", `"step":"060_kubeadm"`, 3 * time.Second}, // kubeadm init under way (~14 s)
		{"grow/nodes/workers", "", 3 * time.Second},               // the worker's bundle under way (it takes ~6 s)
		{"grow/install/wait-platform", "", 2 * time.Second},
	} {
		if killAt(ctx, t, l, args, at.phase, at.marker, at.after) {
			continue
		}
		t.Fatalf("dhctl never reached phase %s", at.phase)
	}
	if _, _, err := run(ctx, t, l, l.BootstrapArgs()...); err != nil {
		t.Fatalf("dhctl bootstrap after three kills: %v", err)
	}
	checkCluster(ctx, t, l)
}

// killAt runs dhctl and SIGKILLs it `after` the start of phase (or, with a marker, after the
// first line holding the marker once the phase started); false if it ended before.
func killAt(ctx context.Context, t *testing.T, l *lab.Lab, args []string, phase, marker string, after time.Duration) bool {
	t.Helper()
	cmd := l.Command(ctx, args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var killed, ended, started, armed bool
	var tail []string // the output's last lines, for a run that failed on its own
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			tail = append(tail, line)
			if len(tail) > 60 {
				tail = tail[1:]
			}
			mu.Unlock()
			if strings.Contains(line, `"event":"phase-end"`) && strings.Contains(line, `"phase":"`+phase+`"`) {
				mu.Lock()
				ended = !killed
				mu.Unlock()
			}
			isStart := strings.Contains(line, `"event":"phase-start"`) && strings.Contains(line, `"phase":"`+phase+`"`)
			started = started || isStart
			trigger := (marker == "" && isStart) || (marker != "" && started && !isStart && strings.Contains(line, marker))
			if trigger && !armed {
				armed = true
				t.Logf("phase %s started (marker %q); SIGKILL in %v", phase, marker, after)
				time.AfterFunc(after, func() {
					mu.Lock()
					defer mu.Unlock()
					killed = cmd.Process.Signal(syscall.SIGKILL) == nil
				})
			}
		}
	}()
	err := cmd.Wait()
	pw.Close()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("dhctl ended (%v); killed in %s: %v", err, phase, killed && !ended)
	if err != nil && !killed {
		t.Logf("dhctl FAILED on its own; its last lines:\n%s", strings.Join(tail, "\n"))
	}
	if ended {
		t.Errorf("phase %s ended before the kill: kill it sooner", phase)
	}
	return killed
}

// checkCluster: every node Ready and the objects a clean bootstrap makes, each exactly once.
func checkCluster(ctx context.Context, t *testing.T, l *lab.Lab) {
	t.Helper()
	want := map[string]string{
		"nodes Ready": fmt.Sprint(len(l.Masters) + len(l.Workers)),
		// kubeadm init's token (dhctl's, reused by every re-run) and the one upload-certs makes to
		// own the kubeadm-certs Secret.
		"bootstrap tokens":                     "2",
		"d8-cluster-uuid ConfigMaps":           "1",
		"deployments":                          "d8-system/deckhouse kube-system/coredns",
		"daemonsets":                           "kube-flannel/kube-flannel-ds kube-system/kube-proxy",
		"NodeGroups":                           "master worker",
		"kube-system/d8-cluster-configuration": "1",
		// The lab's podSubnetNodeCIDRPrefix "25": kube-controller-manager gives every node a /25.
		"nodes with a /25 podCIDR": fmt.Sprint(len(l.Masters) + len(l.Workers)),
	}
	got := map[string]string{}
	q := func(key string, args ...string) {
		out, err := l.Kubectl(ctx, args...)
		if err != nil {
			t.Errorf("%s: %v", key, err)
		}
		got[key] = out
	}
	q("nodes", "get", "nodes", "-o", "wide")
	t.Logf("kubectl get nodes -o wide (dhctl's kubeconfig %s):\n%s", l.Kubeconfig(), got["nodes"])
	got["nodes Ready"] = fmt.Sprint(strings.Count(got["nodes"], " Ready "))
	q("tokens", "-n", "kube-system", "get", "secrets", "--field-selector", "type=bootstrap.kubernetes.io/token", "-o", "name")
	got["bootstrap tokens"] = fmt.Sprint(len(strings.Fields(got["tokens"])))
	q("uuid", "-n", "kube-system", "get", "configmaps", "-o", "name")
	got["d8-cluster-uuid ConfigMaps"] = fmt.Sprint(strings.Count(got["uuid"], "configmap/d8-cluster-uuid"))
	got["kube-system/d8-cluster-configuration"] = fmt.Sprint(strings.Count(must(l.Kubectl(ctx, "-n", "kube-system", "get", "secrets", "-o", "name")), "secret/d8-cluster-configuration\n"))
	got["deployments"] = names(must(l.Kubectl(ctx, "get", "deployments", "-A", "--no-headers", "-o", "custom-columns=N:.metadata.namespace,M:.metadata.name")))
	got["daemonsets"] = names(must(l.Kubectl(ctx, "get", "daemonsets", "-A", "--no-headers", "-o", "custom-columns=N:.metadata.namespace,M:.metadata.name")))
	podCIDRs := strings.Fields(must(l.Kubectl(ctx, "get", "nodes", "-o", "jsonpath={.items[*].spec.podCIDR}")))
	t.Logf("nodes' podCIDRs: %v", podCIDRs)
	n25 := 0
	for _, c := range podCIDRs {
		if strings.HasSuffix(c, "/25") {
			n25++
		}
	}
	got["nodes with a /25 podCIDR"] = fmt.Sprint(n25)
	got["NodeGroups"] = names(must(l.Kubectl(ctx, "get", "nodegroups", "--no-headers", "-o", "custom-columns=N:.metadata.name")))
	// Every node registered with its group's label; the workers with their group's nodeTemplate
	// labels and taints (the lab's NodeGroup worker).
	want["nodes by group"] = strings.TrimSpace(strings.Repeat("master ", len(l.Masters)) + strings.Repeat("worker ", len(l.Workers)))
	got["nodes by group"] = strings.Join(strings.Fields(must(l.Kubectl(ctx, "get", "nodes", "--sort-by=.metadata.name", "-o", `jsonpath={range .items[*]}{.metadata.labels.node\.deckhouse\.io/group}{" "}{end}`))), " ")
	want["workers with the template"] = fmt.Sprint(len(l.Workers))
	got["workers with the template"] = fmt.Sprint(strings.Count(must(l.Kubectl(ctx, "get", "nodes", "-l", "node.deckhouse.io/group=worker,dhctl.test/tier=edge", "-o",
		`jsonpath={range .items[*]}{.spec.taints[?(@.key=="dhctl.test/edge")].effect}{"\n"}{end}`)), "PreferNoSchedule"))
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %q, want %q", k, got[k], w)
		}
	}
	uuid, err := os.ReadFile(filepath.Join(l.StateDir, "lab", "cluster-uuid"))
	if err != nil {
		t.Fatal(err)
	}
	inCluster := must(l.Kubectl(ctx, "-n", "kube-system", "get", "configmap", "d8-cluster-uuid", "-o", "jsonpath={.data.cluster-uuid}"))
	if strings.TrimSpace(inCluster) != strings.TrimSpace(string(uuid)) {
		t.Errorf("cluster UUID in the cluster %q, in the state dir %q", inCluster, uuid)
	}
}

func must(out string, err error) string {
	if err != nil {
		return "ERROR: " + err.Error()
	}
	return out
}

// names turns "ns name" lines into a sorted "ns/name ..." list.
func names(out string) string {
	var ns []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			ns = append(ns, strings.Join(f, "/"))
		}
	}
	sort.Strings(ns)
	return strings.Join(ns, " ")
}

const smokeYAML = `apiVersion: v1
kind: Namespace
metadata: {name: smoke}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: smoke}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      tolerations:
      - {key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
      - name: web
        image: %[1]s/flannel:v0.26.7
        command: [/bin/busybox, sh, -c, 'mkdir -p /www && echo "hello from $(/bin/busybox hostname)" > /www/index.html && exec /bin/busybox httpd -f -v -p 8080 -h /www']
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 2
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: smoke}
spec:
  selector: {app: web}
  ports:
  - {port: 80, targetPort: 8080}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: smoke}
spec:
  containers:
  - name: client
    image: %[1]s/flannel:v0.26.7
    command: [/bin/busybox, sh, -c, 'echo client-started; exec /bin/busybox sleep 3600']
`

// smoke: a Deployment on both nodes, a Service reached by name from a pod, logs and exec.
func smoke(ctx context.Context, t *testing.T, l *lab.Lab) {
	t.Helper()
	manifest := filepath.Join(l.Dir, "smoke.yml")
	if err := os.WriteFile(manifest, fmt.Appendf(nil, smokeYAML, l.ImagesRepo), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Kubectl(ctx, "apply", "-f", manifest); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Kubectl(ctx, "-n", "smoke", "rollout", "status", "deployment/web", "--timeout=100s"); err != nil {
		out, _ := l.Kubectl(ctx, "-n", "smoke", "describe", "pods")
		t.Fatalf("%v\n%s", err, out)
	}
	if _, err := l.Kubectl(ctx, "-n", "smoke", "wait", "pod/client", "--for=condition=Ready", "--timeout=100s"); err != nil {
		t.Fatal(err)
	}
	nodes := must(l.Kubectl(ctx, "-n", "smoke", "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.nodeName}"))
	if f := strings.Fields(nodes); len(f) != 2 || f[0] == f[1] {
		t.Errorf("the 2 replicas run on %q, want both nodes", nodes)
	}
	// DNS and the Service from a pod, through kubectl exec.
	script := `ip=$(/bin/busybox nslookup web.smoke.svc.cluster.local | /bin/busybox awk '/^Address: /{a=$2} END{print a}'); echo "web is $ip"; ` +
		`for i in 1 2 3 4 5 6 7 8 9 10; do printf 'GET / HTTP/1.0\r\n\r\n' | /bin/busybox nc -w 5 "$ip" 80 && exit 0; /bin/busybox sleep 2; done; exit 1`
	out, err := l.Kubectl(ctx, "-n", "smoke", "exec", "client", "--", "/bin/busybox", "sh", "-c", script)
	t.Logf("from the client pod:\n%s", out)
	if err != nil || !strings.Contains(out, "web is 10.222.") || !strings.Contains(out, "hello from web-") {
		t.Errorf("the Service web.smoke by DNS name from a pod: %v\n%s", err, out)
	}
	if out := must(l.Kubectl(ctx, "-n", "smoke", "logs", "client")); !strings.Contains(out, "client-started") {
		t.Errorf("kubectl logs client: %q", out)
	}
}

// TestBootstrapHA: 3 masters + 2 workers, every SSH connection through a bastion machine: etcd
// has 3 members, and with one master powered off the API server still reads and writes (etcd
// keeps its quorum).
func TestBootstrapHA(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	l := rigtest.StartLab(ctx, t, lab.Options{Masters: 3, Workers: 2, Bastion: true})
	_, took, err := run(ctx, t, l, l.BootstrapArgs()...)
	if err != nil {
		t.Fatalf("dhctl bootstrap: %v", err)
	}
	t.Logf("FIGURE bootstrap 3 masters + 2 workers through a bastion, command start to all nodes Ready: %v", took.Round(100*time.Millisecond))
	logCriticalPath(ctx, t, l, took, logStepTimes(t, l))
	checkCluster(ctx, t, l)

	// dhctl reached the machines through the bastion: their sshd saw its logins come from there.
	for _, m := range append(append([]*rig.Machine(nil), l.Masters...), l.Workers...) {
		out, err := m.Run(ctx, "journalctl -u ssh --no-pager -o cat | grep -c 'Accepted publickey for root from "+l.Bastion.Address.String()+" ' || true", nil)
		if err != nil || strings.TrimSpace(out) == "0" {
			t.Errorf("%s: no SSH login from the bastion %s: %v %q", m.Name, l.Bastion.Address, err, out)
		}
	}
	if n, err := etcdMembers(ctx, l); err != nil || n != 3 {
		t.Errorf("etcd members: %d, %v; want 3", n, err)
	}
	stopped := l.Masters[2]
	if err := l.Rig.StopMachine(stopped.Name); err != nil {
		t.Fatal(err)
	}
	t.Logf("master %s powered off", stopped.Name)
	if _, err := l.Kubectl(ctx, "get", "nodes"); err != nil {
		t.Errorf("reading with one master down: %v", err)
	}
	if _, err := l.Kubectl(ctx, "-n", "default", "create", "configmap", "quorum-check", "--from-literal=ok=1"); err != nil {
		t.Errorf("writing with one master down: %v", err)
	}
}

// logStepTimes logs what the machines themselves spent in each bundle step (package install,
// containerd, kubeadm init/join with its image pulls), from the "step done" lines of dhctl's
// debug logs, next to dhctl's wall time: the difference is dhctl's own share plus the waits for
// pods (CNI, CoreDNS, platform: image pulls by the kubelet).
func logStepTimes(t *testing.T, l *lab.Lab) []stepDone {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(l.StateDir, "lab", "logs", "*-bootstrap.log"))
	perStep := map[string]time.Duration{}
	var lines []string
	var done []stepDone
	for _, f := range logs {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Error(err)
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if !strings.Contains(line, `"msg":"step done"`) {
				continue
			}
			var rec stepDone
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			done = append(done, rec)
			perStep[rec.Step] += rec.Took
			lines = append(lines, fmt.Sprintf("%s %s %v", rec.Host, rec.Step, rec.Took.Round(10*time.Millisecond)))
		}
	}
	var steps []string
	for s, d := range perStep {
		steps = append(steps, fmt.Sprintf("%s=%v", s, d.Round(100*time.Millisecond)))
	}
	sort.Strings(steps)
	t.Logf("FIGURE machine-side bundle steps, summed over hosts: %s", strings.Join(steps, " "))
	t.Logf("bundle steps per host:\n%s", strings.Join(lines, "\n"))
	return done
}

// stepDone is a "step done" line of dhctl's debug log: the step ended at Time after Took.
type stepDone struct {
	Host, Step string
	Took       time.Duration
	Time       time.Time
}

// kubeadmStep is the node bundle's kubeadm init/join step.
const kubeadmStep = "060_kubeadm"

// logCriticalPath logs the machine-side critical path of the bootstrap that took took: kubeadm
// init on the first master, the other masters' joins (one at a time, so summed), and the CNI
// becoming Ready on every node after the last of them (the CNI pods' Ready transitions, which
// the API server keeps to the second), next to the command's wall time and their ratio. What
// the path leaves out is what dhctl adds, or what it could not yet overlap (the machines'
// preparation).
func logCriticalPath(ctx context.Context, t *testing.T, l *lab.Lab, took time.Duration, done []stepDone) {
	t.Helper()
	var initTook, joins time.Duration
	var cpEnd time.Time
	for _, m := range l.Masters {
		var d *stepDone
		for i := range done {
			if done[i].Step == kubeadmStep && done[i].Host == m.Address.String() {
				d = &done[i]
			}
		}
		if d == nil {
			t.Errorf("critical path: no %s step on master %s in dhctl's debug log", kubeadmStep, m.Address)
			return
		}
		if m == l.Masters[0] {
			initTook = d.Took
		} else {
			joins += d.Took
		}
		if d.Time.After(cpEnd) {
			cpEnd = d.Time
		}
	}
	// A node turns Ready once the CNI's configuration is written, which may be before its CNI pod
	// is Ready: wait for one Ready CNI pod per node (bounded), then take the last Ready transition.
	want := len(l.Masters) + len(l.Workers)
	var cniReady time.Time
	rigtest.WaitFor(ctx, t, 2*time.Minute, "a Ready CNI pod on every node", func() (bool, string) {
		out, err := l.Masters[0].Run(ctx, "kubectl --kubeconfig /etc/kubernetes/admin.conf get pods -n kube-flannel -o json", nil)
		if err != nil {
			return false, err.Error()
		}
		var pods struct {
			Items []struct {
				Status struct {
					Conditions []struct {
						Type, Status       string
						LastTransitionTime time.Time `json:"lastTransitionTime"`
					} `json:"conditions"`
				} `json:"status"`
			} `json:"items"`
		}
		if err := json.Unmarshal([]byte(out), &pods); err != nil {
			return false, err.Error()
		}
		ready, last := 0, time.Time{}
		for _, p := range pods.Items {
			for _, c := range p.Status.Conditions {
				if c.Type == "Ready" && c.Status == "True" {
					ready++
					if c.LastTransitionTime.After(last) {
						last = c.LastTransitionTime
					}
				}
			}
		}
		cniReady = last
		return ready == want, fmt.Sprintf("%d of %d CNI pods Ready", ready, want)
	})
	cni := max(cniReady.Sub(cpEnd), 0)
	path := initTook + joins + cni
	t.Logf("FIGURE machine-side critical path: kubeadm init %v + control-plane joins %v + CNI Ready on every node %v after = %v; command %v, ratio %.2f (goal <= 1.15)",
		initTook.Round(100*time.Millisecond), joins.Round(100*time.Millisecond), cni.Round(time.Second), path.Round(100*time.Millisecond),
		took.Round(100*time.Millisecond), took.Seconds()/path.Seconds())
}

// etcdMembers asks etcd on the first master for its member list (its v3 JSON gateway), with the
// API server's etcd client certificate.
func etcdMembers(ctx context.Context, l *lab.Lab) (int, error) {
	m := l.Masters[0]
	read := func(path string) ([]byte, error) {
		out, err := m.Run(ctx, "cat "+path, nil)
		return []byte(out), err
	}
	ca, err := read("/etc/kubernetes/pki/etcd/ca.crt")
	if err != nil {
		return 0, err
	}
	cert, err := read("/etc/kubernetes/pki/apiserver-etcd-client.crt")
	if err != nil {
		return 0, err
	}
	key, err := read("/etc/kubernetes/pki/apiserver-etcd-client.key")
	if err != nil {
		return 0, err
	}
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		return 0, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext:     l.Rig.DialContext,
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
	}}
	resp, err := client.Post("https://"+m.Address.String()+":2379/v3/cluster/member/list", "application/json", strings.NewReader("{}"))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var list struct {
		Members []struct {
			Name string `json:"name"`
		} `json:"members"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return 0, fmt.Errorf("etcd member list (HTTP %s): %w", resp.Status, err)
	}
	return len(list.Members), nil
}

// exitCode is a finished command's exit status (0 for nil, -1 when it did not run).
func exitCode(err error) int {
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exitErr):
		return exitErr.ExitCode()
	}
	return -1
}

// logPodTimeline prints when each node and pod got through its conditions, in seconds after the
// first node registered (kubeadm init's kubelet): where the time after kubeadm init goes.
func logPodTimeline(ctx context.Context, t *testing.T, l *lab.Lab) {
	t.Helper()
	out, err := l.Masters[0].Run(ctx, "kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes,pods -A -o json", nil)
	if err != nil {
		t.Logf("pod timeline: %v", err)
		return
	}
	var list struct {
		Items []struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name, Namespace   string
				CreationTimestamp time.Time `json:"creationTimestamp"`
			} `json:"metadata"`
			Status struct {
				Conditions []struct {
					Type, Status       string
					LastTransitionTime time.Time `json:"lastTransitionTime"`
				} `json:"conditions"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Logf("pod timeline: %v", err)
		return
	}
	var origin time.Time
	for _, it := range list.Items {
		if it.Kind == "Node" && (origin.IsZero() || it.Metadata.CreationTimestamp.Before(origin)) {
			origin = it.Metadata.CreationTimestamp
		}
	}
	var rows []string
	for _, it := range list.Items {
		row := fmt.Sprintf("%-5s %-45s created %+4.0fs", it.Kind, strings.TrimPrefix(it.Metadata.Namespace+"/"+it.Metadata.Name, "/"), it.Metadata.CreationTimestamp.Sub(origin).Seconds())
		for _, c := range it.Status.Conditions {
			if c.Status == "True" && (c.Type == "PodScheduled" || c.Type == "Initialized" || c.Type == "Ready") {
				row += fmt.Sprintf(" %s %+4.0fs", c.Type, c.LastTransitionTime.Sub(origin).Seconds())
			}
		}
		rows = append(rows, row)
	}
	sort.Strings(rows)
	t.Logf("timeline (seconds after the first node registered):\n  %s", strings.Join(rows, "\n  "))
	logImagePulls(ctx, t, l, origin)
}

// logImagePulls logs the kubelets' image pulls (their Pulled events): what a pod waited for its
// images, which pre-pulling during the machines' preparation saves.
func logImagePulls(ctx context.Context, t *testing.T, l *lab.Lab, origin time.Time) {
	t.Helper()
	out, err := l.Masters[0].Run(ctx, "kubectl --kubeconfig /etc/kubernetes/admin.conf get events -A --field-selector reason=Pulled -o json", nil)
	if err != nil {
		t.Logf("image pulls: %v", err)
		return
	}
	var list struct {
		Items []struct {
			Message        string    `json:"message"`
			FirstTimestamp time.Time `json:"firstTimestamp"`
			Source         struct {
				Host string `json:"host"`
			} `json:"source"`
			InvolvedObject struct {
				Name string `json:"name"`
			} `json:"involvedObject"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Logf("image pulls: %v", err)
		return
	}
	var rows []string
	for _, e := range list.Items {
		rows = append(rows, fmt.Sprintf("%+4.0fs %-10s %-40s %s", e.FirstTimestamp.Sub(origin).Seconds(), e.Source.Host, e.InvolvedObject.Name, e.Message))
	}
	sort.Strings(rows)
	t.Logf("image pulls by the kubelets (seconds after the first node registered):\n  %s", strings.Join(rows, "\n  "))
}

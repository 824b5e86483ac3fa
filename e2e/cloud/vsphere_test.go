// Package cloud_test is `dhctl bootstrap` of a Cloud cluster on the rig, run as a user runs it:
// the real binary in the rig's network namespace, the real engine (OpenTofu, and Terraform for
// the base infrastructure) with the vSphere provider from the local mirror, against govmomi's
// vCenter simulator listening inside the rig's namespace. The simulator's VMs have no guests:
// two plain rig machines stand in for them, their addresses given to the VMs as static
// addresses (mainNetworkIPAddresses), so the machines dhctl reads from the node steps' outputs
// are those it then bootstraps over SSH.
//
// TestVsphereBootstrap:
//   - a preflight with a wrong datastore fails naming it, and nothing is made;
//   - bootstrap makes the VM folder, the resource pools and the VMs lab-master-0 and
//     lab-worker-0 (CPUs, memory and first-boot data as configured), and a cluster whose nodes
//     carry those names, with the infrastructure states and the discovery data in the cluster;
//   - the same command again finds the infrastructure in sync and makes nothing;
//   - bootstrap-phase base-infra works alone, with OpenTofu and with Terraform (on the state
//     OpenTofu wrote, and from nothing for another cluster); the vCenter password is in no
//     output and no log;
//   - destroy removes the other cluster's base infrastructure (Terraform), then this cluster
//     from another, empty state dir (--ssh-host the first master: the join data and the
//     infrastructure states read from the cluster), SIGKILLed inside the infrastructure's
//     destroy and run again from what it wrote there: the simulator then holds
//     what it held before the bootstrap (entities and datastore files; the data disks' shared
//     directory is kept, empty), and a destroy once more says the cluster is already destroyed.
//
// TestVsphereBootstrapKilled: dhctl killed inside node-infra twice (vCenter held back so the
// kills land where a real one takes its time); the runs after adopt what each left.
//
// Converge (in TestVsphereBootstrap, on its cluster): in sync after the bootstrap; memory changed
// in place; a new template replaces the worker's VM (refused unconfirmed); masters 1 → 2 killed
// while the VM is made, then finished; a master left without its etcd member joined again;
// back to 1 + 1 with the dropped replica's VM destroyed.
package cloud_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/mo"

	"github.com/dhctl-dev/dhctl/e2e/artifacts"
	"github.com/dhctl-dev/dhctl/e2e/internal/lab"
	"github.com/dhctl-dev/dhctl/e2e/internal/rigtest"
	"github.com/dhctl-dev/dhctl/providers/vsphere/vspheretest"
)

// vcenterPort is where the simulator listens on the rig's bridge address: the configuration
// names it before the simulator starts, and the rig's namespace is the test's own, with only the
// registry (:5000) in it.
const vcenterPort = "8443"

// vcenterPassword is the provider's password (the simulator takes any): distinct enough that its
// absence from every output and log means it was kept out of them.
const vcenterPassword = "vcsim-0c7e51d3-secret"

// vsphereCluster is the Cloud configuration a user writes for vSphere on the rig: the lab's
// cluster settings and registry (ClusterSettings, Init), a VsphereClusterConfiguration for the simulator whose two VMs get the rig
// machines' addresses and whose worker group carries a nodeTemplate, the lab's CNI and
// kube-proxy settings (no NodeGroup document: the worker group is the provider's).
const vsphereCluster = `apiVersion: deckhouse.io/v1
kind: ClusterConfiguration
clusterType: Cloud
cloud:
  provider: vSphere
  prefix: lab
` + lab.ClusterSettings + lab.Init + `---
apiVersion: deckhouse.io/v1
kind: VsphereClusterConfiguration
layout: Standard
provider:
  server: "{{.Gateway}}:` + vcenterPort + `"
  username: ` + vspheretest.Username + `
  password: ` + vcenterPassword + `
  insecure: true
vmFolderPath: lab
regionTagCategory: ` + vspheretest.RegionCat + `
region: ` + vspheretest.RegionTag + `
zones: [` + vspheretest.Cluster + `, ` + vspheretest.ZoneB + `]
sshPublicKey: {{.SSHPublicKey}}
masterNodeGroup:
  replicas: 1
  instanceClass:
    numCPUs: 2
    memory: 2048
    template: ` + vspheretest.Template + `
    mainNetwork: ` + vspheretest.Network + `
    datastore: ` + vspheretest.Datastore + `
    rootDiskSize: 12
    mainNetworkIPAddresses:
    - address: {{index .Addresses 0}}/24
      gateway: {{.Gateway}}
      nameservers: {}
nodeGroups:
- name: worker
  replicas: 1
  zones: [` + vspheretest.ZoneB + `]
  nodeTemplate:
    labels: {dhctl.example.com/pool: vsphere}
  instanceClass:
    numCPUs: 1
    memory: 1024
    template: ` + vspheretest.Template + `
    mainNetwork: ` + vspheretest.Network + `
    datastore: ` + vspheretest.Datastore + `
    mainNetworkIPAddresses:
    - address: {{index .Addresses 1}}/24
      gateway: {{.Gateway}}
      nameservers: {}
` + lab.CNI + lab.KubeProxy

// engine is the infrastructure engine and the provider mirror a run gives dhctl.
type engine struct{ binary, plugins string }

// dhctl is a dhctl command line for the lab: command (e.g. "bootstrap" or "bootstrap-phase",
// "base-infra"), a configuration, the lab's SSH settings and state dir, a cluster name, the rig's
// version map override and an engine. No --ssh-host: the machines come from the infrastructure.
func dhctl(l *lab.Lab, command []string, config, cluster string, e engine) []string {
	args := append(append(slices.Clone(command), "--config", config), l.CommonArgs()...)
	return append(args, "--cluster-name", cluster, "--version-map-override", l.OverridePath,
		"--terraform-binary", e.binary, "--terraform-plugins-dir", e.plugins)
}

// run runs dhctl in the rig's namespace and logs its output, which must not show the vCenter
// password.
func run(ctx context.Context, t *testing.T, l *lab.Lab, args []string) (string, int, time.Duration) {
	t.Helper()
	out, code, took := rigtest.Run(t, l.Command(ctx, args...))
	t.Logf("dhctl %s: exit %d in %v\n%s", strings.Join(args[:2], " "), code, took.Round(10*time.Millisecond), out)
	if strings.Contains(out, vcenterPassword) {
		t.Errorf("dhctl %s shows the vCenter password", strings.Join(args[:2], " "))
	}
	return out, code, took
}

// start brings up the lab with plain machines (the first two the configuration's VMs, the
// others spares for the replicas converge adds), the engines and the simulator (with delays).
func start(ctx context.Context, t *testing.T, machines int, delays map[string]time.Duration) (l *lab.Lab, sim *vspheretest.Env, tofu, terraform engine) {
	t.Helper()
	l = rigtest.StartLab(ctx, t, lab.Options{Machines: machines, Config: vsphereCluster})
	opts := artifacts.Options{Logf: t.Logf}
	bins, err := artifacts.Build(ctx, opts, artifacts.OpenTofu, artifacts.Terraform)
	if err != nil {
		t.Fatalf("building the engines: %v", err)
	}
	mirror, err := artifacts.ProviderMirror(ctx, opts)
	if err != nil {
		t.Fatalf("building the provider mirror: %v", err)
	}
	tofu, terraform = engine{bins["tofu"], mirror}, engine{bins["terraform"], mirror}
	if tofu.binary == "" || terraform.binary == "" {
		t.Fatalf("the artifacts lack an engine: %v", bins)
	}
	// dhctl runs in the rig's namespace: the simulator listens there, on the bridge address.
	sim = vspheretest.StartWith(t, ctx, vspheretest.Options{
		Listen:      net.JoinHostPort(l.Rig.BridgeAddress().String(), vcenterPort),
		Within:      l.Rig.InNetNS,
		DialContext: l.Rig.DialContext,
		Delays:      delays,
	})
	return l, sim, tofu, terraform
}

func TestVsphereBootstrap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	l, sim, tofu, terraform := start(ctx, t, 3, nil)
	before := sim.VMNames(t, ctx)
	inventory := sim.Inventory(t, ctx)
	master, worker := l.Machines[0], l.Machines[1]

	// A wrong datastore: the preflight names it, and nothing is made.
	badConfig := writeVariant(t, l, "bad-datastore.yml", "datastore: "+vspheretest.Datastore+"\n    mainNetworkIPAddresses:\n    - address: "+worker.Address.String(),
		"datastore: no-such-datastore\n    mainNetworkIPAddresses:\n    - address: "+worker.Address.String())
	out, code, _ := run(ctx, t, l, dhctl(l, []string{"bootstrap"}, badConfig, "bad", tofu))
	if code == 0 || !strings.Contains(out, `nodeGroups[0].instanceClass.datastore: datastore "no-such-datastore" not found`) {
		t.Errorf("bootstrap with a wrong datastore: exit %d, want non-zero naming nodeGroups[0].instanceClass.datastore and the datastore", code)
	}
	if got := sim.VMNames(t, ctx); !slices.Equal(got, before) {
		t.Errorf("after the failed preflight the VMs are %v, want %v", got, before)
	}
	if _, err := sim.Finder.Folder(ctx, "/"+vspheretest.Datacenter+"/vm/lab"); err == nil {
		t.Errorf("after the failed preflight the VM folder lab exists")
	}
	if states, _ := filepath.Glob(filepath.Join(l.StateDir, "bad", "*", "*.tfstate")); len(states) > 0 {
		t.Errorf("after the failed preflight terraform states exist: %v", states)
	}

	// The bootstrap.
	args := dhctl(l, []string{"bootstrap"}, l.ConfigPath, l.ClusterName, tofu)
	out, code, took := run(ctx, t, l, args)
	if code != 0 {
		t.Fatalf("dhctl bootstrap: exit %d", code)
	}
	t.Logf("FIGURE vSphere bootstrap 1 master + 1 worker (OpenTofu), command start to all nodes Ready: %v", took.Round(100*time.Millisecond))
	for _, p := range []string{"preflight", "base-infra", "node-infra", "first-master", "prepare", "grow/nodes/workers", "grow/install", "wait-cluster"} {
		t.Logf("FIGURE first run, phase %s: %s", p, phaseTook(out, p))
	}
	checkVMs(ctx, t, sim, before, master.Address.String(), worker.Address.String(), l.SSHPublicKey())
	checkCluster(ctx, t, l, master.Address.String(), worker.Address.String())

	// The same command again: the infrastructure is in sync, nothing is made.
	out, code, took = run(ctx, t, l, args)
	if code != 0 {
		t.Fatalf("second dhctl bootstrap: exit %d", code)
	}
	t.Logf("FIGURE vSphere bootstrap re-run on the finished cluster: %v (base-infra %s, node-infra %s)", took.Round(100*time.Millisecond),
		phaseTook(out, "base-infra"), phaseTook(out, "node-infra"))
	for _, step := range []string{"base-infrastructure", "lab-master-0", "lab-worker-0"} {
		if !inSync(out, step) {
			t.Errorf("re-run: step %s not reported in sync", step)
		}
	}
	if strings.Contains(out, "infrastructure plan") {
		t.Errorf("re-run: an infrastructure plan with changes was made")
	}
	checkVMs(ctx, t, sim, before, master.Address.String(), worker.Address.String(), l.SSHPublicKey())

	convergeCloud(ctx, t, l, sim, tofu, before)

	// base-infra on its own, with OpenTofu: in sync.
	out, code, _ = run(ctx, t, l, dhctl(l, []string{"bootstrap-phase", "base-infra"}, l.ConfigPath, l.ClusterName, tofu))
	if code != 0 || !inSync(out, "base-infrastructure") {
		t.Errorf("bootstrap-phase base-infra (OpenTofu): exit %d, want 0 with the base infrastructure in sync", code)
	}

	// An operator may change engines: the state OpenTofu wrote is in sync for Terraform too.
	out, code, _ = run(ctx, t, l, dhctl(l, []string{"bootstrap-phase", "base-infra"}, l.ConfigPath, l.ClusterName, terraform))
	if code != 0 || !inSync(out, "base-infrastructure") {
		t.Errorf("bootstrap-phase base-infra with Terraform on the state OpenTofu wrote: exit %d, want 0 with the base infrastructure in sync", code)
	}

	// base-infra on its own with Terraform, for another cluster (its own prefix and VM folder) on
	// the same vCenter: made, then in sync.
	tfConfig := writeVariant(t, l, "terraform.yml", "prefix: lab\n", "prefix: tf\n", "vmFolderPath: lab\n", "vmFolderPath: tf\n")
	tfArgs := dhctl(l, []string{"bootstrap-phase", "base-infra"}, tfConfig, "tf", terraform)
	out, code, took = run(ctx, t, l, tfArgs)
	if code != 0 || !strings.Contains(out, "Terraform 1.5.7") {
		t.Errorf("bootstrap-phase base-infra (Terraform): exit %d, want 0 with Terraform 1.5.7 as the engine", code)
	}
	t.Logf("FIGURE bootstrap-phase base-infra with Terraform, from nothing: %v", took.Round(100*time.Millisecond))
	if _, err := sim.Finder.Folder(ctx, "/"+vspheretest.Datacenter+"/vm/tf"); err != nil {
		t.Errorf("the base infrastructure Terraform made has no VM folder tf: %v", err)
	}
	if out, code, _ = run(ctx, t, l, tfArgs); code != 0 || !inSync(out, "base-infrastructure") {
		t.Errorf("bootstrap-phase base-infra (Terraform) again: exit %d, want 0 with the base infrastructure in sync", code)
	}
	if got := sim.VMNames(t, ctx); len(got) != len(before)+2 {
		t.Errorf("VMs at the end: %v, want the simulator's and the cluster's two", got)
	}

	// destroy: the other cluster (its base infrastructure alone, with Terraform), then this one,
	// SIGKILLed once the worker's VM is gone (inside the infrastructure's destroy) and run again.
	out, code, took = run(ctx, t, l, destroyArgs(l, tfConfig, "tf", terraform))
	if code != 0 || !strings.Contains(out, "base infrastructure: destroyed") {
		t.Errorf("destroy of the base infrastructure alone (Terraform): exit %d, want 0 with it destroyed", code)
	}
	t.Logf("FIGURE destroy of a base infrastructure alone (Terraform): %v", took.Round(100*time.Millisecond))
	// The lab's destroy runs from another state dir (a lost laptop), with --ssh-host the first
	// master and the configuration: the join data and the infrastructure states are read from
	// the cluster before anything is removed, and the re-run after the kill works from what
	// the first run wrote there.
	destroyLab := destroyArgs(l, l.ConfigPath, l.ClusterName, tofu)
	lostLaptop := filepath.Join(l.Dir, "lost-laptop")
	destroyLab[slices.Index(destroyLab, l.StateDir)] = lostLaptop
	out = rigtest.KillWhen(t, l.Command(ctx, append(slices.Clone(destroyLab), "--ssh-host", master.Address.String())...), "the worker's VM is destroyed", 0, func() bool {
		return !slices.Contains(sim.VMNames(t, ctx), "lab-worker-0")
	})
	for _, want := range []string{"the state dir had no join data: read from the first master " + master.Address.String(),
		"infrastructure states taken from the cluster: lab-master-0, lab-worker-0", "deleted the platform controller"} {
		if !strings.Contains(out, want) {
			t.Errorf("the destroy from another state dir did not say %q before the kill", want)
		}
	}
	if !slices.Contains(sim.VMNames(t, ctx), "lab-master-0") {
		t.Errorf("the master's VM is gone too: the kill came too late to land inside the destroy")
	}
	out, code, took = run(ctx, t, l, destroyLab)
	if code != 0 {
		t.Fatalf("destroy after a kill inside the infrastructure's destroy: exit %d", code)
	}
	t.Logf("FIGURE vSphere destroy after a kill (the rest: master, base infrastructure): %v", took.Round(100*time.Millisecond))
	for _, want := range []string{"lab-master-0: destroyed", "base infrastructure: destroyed"} {
		if !strings.Contains(out, want) {
			t.Errorf("the destroy after the kill does not say %q", want)
		}
	}
	if got := vspheretest.WithoutDiskDirs(sim.Inventory(t, ctx)); !slices.Equal(got, inventory) {
		t.Errorf("after destroy the simulator holds:\n%s\nbefore the bootstrap it held:\n%s", strings.Join(got, "\n"), strings.Join(inventory, "\n"))
	}
	for _, dir := range []string{filepath.Join(lostLaptop, l.ClusterName), filepath.Join(l.StateDir, "tf")} {
		if states, _ := filepath.Glob(filepath.Join(dir, "terraform", "*")); len(states) > 0 {
			t.Errorf("the state dir %s keeps %v after destroy", dir, states)
		}
	}
	// Once more: nothing left, and it says so.
	if out, code, _ = run(ctx, t, l, destroyLab); code != 0 || !strings.Contains(out, "already destroyed") {
		t.Errorf("destroy of the destroyed cluster: exit %d, want 0 saying it is already destroyed", code)
	}
	checkLogs(t, l)
}

// convergeCloud: converge --check finds every step InSync; the worker's memory changed is
// OutOfSync (exit 4), applied in place (the VM has the new memory, the state in the cluster is
// the new one). A new template for the worker is DestructiveOutOfSync: refused unconfirmed,
// nothing changed; confirmed, the worker is drained, removed, its VM made again (a new VM) and
// the node joined again, Ready with its template's label. Then masters 1 → 2, SIGKILLed while
// the VM is made: the run after joins the master (etcd: 2 members), one VM. The new master is
// then left as a join interrupted before etcd leaves it (no member): converge --check finds it,
// and converge without --config (the configuration the grow kept in the cluster) and without
// the bootstrap's state dir (what it needs restored from the first master and the cluster)
// joins it again. Then back to 1 + 1: the new master leaves etcd, is removed and its VM destroyed with
// the settings it was made from (the configuration no longer has its address), its machine
// clean.
func convergeCloud(ctx context.Context, t *testing.T, l *lab.Lab, sim *vspheretest.Env, e engine, before []string) {
	t.Helper()
	check := dhctl(l, []string{"converge", "--check"}, l.ConfigPath, l.ClusterName, e)
	out, code, took := run(ctx, t, l, check)
	for _, step := range []string{"base-infrastructure", "lab-master-0", "lab-worker-0"} {
		if !strings.Contains(out, "infrastructure "+step+": InSync") {
			t.Errorf("converge --check after the bootstrap does not report %s InSync", step)
		}
	}
	if code != 0 {
		t.Fatalf("converge --check after the bootstrap: exit %d, want 0", code)
	}
	t.Logf("FIGURE vSphere converge --check in sync (3 engine plans): %v", took.Round(100*time.Millisecond))

	memory := writeVariant(t, l, "memory.yml", "memory: 1024\n", "memory: 1536\n")
	out, code, _ = run(ctx, t, l, dhctl(l, []string{"converge", "--check"}, memory, l.ClusterName, e))
	if code != 4 || !strings.Contains(out, "infrastructure lab-worker-0: OutOfSync: update vsphere_virtual_machine.node") ||
		!strings.Contains(out, "infrastructure lab-master-0: InSync") {
		t.Fatalf("converge --check with the worker's memory changed: exit %d, want 4 with lab-worker-0 OutOfSync", code)
	}
	out, code, took = run(ctx, t, l, dhctl(l, []string{"converge"}, memory, l.ClusterName, e))
	if code != 0 || !strings.Contains(out, "infrastructure lab-worker-0: changed in place") {
		t.Fatalf("converge of the worker's memory: exit %d", code)
	}
	t.Logf("FIGURE vSphere converge changing a VM's memory in place: %v", took.Round(100*time.Millisecond))
	if got := vmMemory(ctx, t, sim, "lab-worker-0"); got != 1536 {
		t.Errorf("lab-worker-0 has %d MiB after the converge, want 1536", got)
	}
	if inCluster := nodeStateInCluster(ctx, t, l, "lab-worker-0"); inCluster != localState(t, l, "lab-worker-0") {
		t.Error("after the converge the worker's state in the cluster is not the local one")
	}

	// A new template: the worker's VM is made again.
	template := writeVariant(t, l, "template.yml", "memory: 1024\n    template: "+vspheretest.Template, "memory: 1536\n    template: "+vspheretest.Template2)
	vmBefore := vmID(ctx, t, sim, "lab-worker-0")
	out, code, _ = run(ctx, t, l, dhctl(l, []string{"converge"}, template, l.ClusterName, e))
	if code != 3 || !strings.Contains(out, "infrastructure lab-worker-0: DestructiveOutOfSync") || !strings.Contains(out, "converge not confirmed") ||
		!strings.Contains(out, "node lab-worker-0 (worker): replace (DESTRUCTIVE") {
		t.Errorf("converge of a new template, unconfirmed: exit %d, want 3 showing lab-worker-0 DestructiveOutOfSync and its node replaced", code)
	}
	if vmID(ctx, t, sim, "lab-worker-0") != vmBefore {
		t.Errorf("the unconfirmed converge replaced lab-worker-0")
	}
	sane := "--yes-i-am-sane-and-i-understand-what-i-am-doing"
	out, code, took = run(ctx, t, l, dhctl(l, []string{"converge", sane}, template, l.ClusterName, e))
	if code != 0 || !strings.Contains(out, "removing node lab-worker-0") || !strings.Contains(out, "machine lab-worker-0 made") ||
		!strings.Contains(out, "node lab-worker-0 (machine lab-worker-0) joined and Ready") {
		t.Fatalf("converge of a new template, confirmed: exit %d, want 0 with lab-worker-0 removed, made again and joined", code)
	}
	t.Logf("FIGURE vSphere converge replacing a worker's VM (drain, clean, VM made again, join): %v", took.Round(100*time.Millisecond))
	if vmID(ctx, t, sim, "lab-worker-0") == vmBefore {
		t.Errorf("lab-worker-0 is the same VM after its replacement")
	}
	if got, err := l.Kubectl(ctx, "get", "node", "lab-worker-0", "-o", `jsonpath={.metadata.labels.dhctl\.example\.com/pool}`); err != nil || got != "vsphere" {
		t.Errorf("the replaced lab-worker-0 has pool label %q (%v), want its nodeTemplate's", got, err)
	}

	// Masters 1 → 2: a VM made, the master joined.
	spare := func(i int) string { return l.Machines[i].Address.String() }
	grow := writeVariant(t, l, "grow.yml",
		"memory: 1024\n    template: "+vspheretest.Template, "memory: 1536\n    template: "+vspheretest.Template2,
		"replicas: 1\n  instanceClass:\n    numCPUs: 2", "replicas: 2\n  instanceClass:\n    numCPUs: 2",
		addressEntry(spare(0), l.Rig.BridgeAddress().String()), addressEntry(spare(0), l.Rig.BridgeAddress().String())+addressEntry(spare(2), l.Rig.BridgeAddress().String()))
	// Killed a second after the new VM appears (inside its apply, or just after); the run after
	// adopts or reads it and joins the master, with one VM.
	growArgs := dhctl(l, []string{"converge"}, grow, l.ClusterName, e)
	killed := rigtest.KillWhen(t, l.Command(ctx, growArgs...), "the new master's VM exists", time.Second, func() bool {
		return slices.Contains(sim.VMNames(t, ctx), "lab-master-1")
	})
	if strings.Contains(killed, "joined and Ready") {
		t.Errorf("the killed converge joined the master: the kill did not land while the machine was made")
	}
	out, code, took = run(ctx, t, l, growArgs)
	for _, want := range []string{"etcd: 2 members, all healthy", "node lab-master-1 (machine lab-master-1) joined and Ready"} {
		if !strings.Contains(out, want) {
			t.Errorf("converge to 2 masters after the kill does not say %q", want)
		}
	}
	if code != 0 {
		t.Fatalf("converge to 2 masters after the kill: exit %d", code)
	}
	t.Logf("FIGURE vSphere converge 1 + 1 → 2 + 1, the run after a kill while the VM was made (the rest, the join): %v", took.Round(100*time.Millisecond))
	want := append(slices.Clone(before), "lab-master-0", "lab-master-1", "lab-worker-0")
	slices.Sort(want)
	if got := sim.VMNames(t, ctx); !slices.Equal(got, want) {
		t.Errorf("VMs after growing: %v, want %v (one per machine)", got, want)
	}
	checkNodes(ctx, t, l, "lab-master-0", "lab-master-1", "lab-worker-0")
	if inCluster := nodeStateInCluster(ctx, t, l, "lab-master-1"); inCluster == "" || inCluster != localState(t, l, "lab-master-1") {
		t.Error("the new master's state is not in the cluster")
	}

	// lab-master-1 as a join interrupted between the kubelet's registration and etcd leaves it:
	// its Node, no etcd member, no etcd of its own. Converge finds it and joins it again.
	second := l.Machines[2]
	if out, err := second.Run(ctx, "kubeadm reset phase remove-etcd-member && mv /etc/kubernetes/manifests/etcd.yaml /root/ && rm -rf /var/lib/etcd", nil); err != nil {
		t.Fatalf("leaving lab-master-1 without its etcd member: %v\n%s", err, out)
	}
	out, code, _ = run(ctx, t, l, dhctl(l, []string{"converge", "--check"}, grow, l.ClusterName, e))
	if code != 4 || !strings.Contains(out, "node lab-master-1 (master): replace (DESTRUCTIVE: master without an etcd member") || !strings.Contains(out, "infrastructure lab-master-1: InSync") {
		t.Errorf("converge --check with lab-master-1 half-joined: exit %d, want 4 planning it joined again", code)
	}
	// Without --config: the configuration the grow kept in the cluster (its registry included)
	// is the one planned from and joined with. Nor with the bootstrap's state dir (another
	// operator's machine): --ssh-host the first master gives the join data (its certificate key
	// encrypts the certificates the master downloads), the cluster the machines' states.
	noConfig := slices.DeleteFunc(dhctl(l, []string{"converge", sane}, grow, l.ClusterName, e), func(a string) bool { return a == "--config" || a == grow })
	elsewhere := filepath.Join(l.Dir, "elsewhere")
	noConfig[slices.Index(noConfig, l.StateDir)] = elsewhere
	out, code, took = run(ctx, t, l, append(noConfig, "--ssh-host", spare(0)))
	if code != 0 || !strings.Contains(out, "node lab-master-1 (machine lab-master-1) joined and Ready") || !strings.Contains(out, "etcd: 2 members, all healthy") ||
		!strings.Contains(out, "infrastructure states taken from the cluster: lab-master-0, lab-master-1, lab-worker-0") ||
		!strings.Contains(out, "the state dir had no join data: read from the first master "+spare(0)) {
		t.Fatalf("converge of the half-joined lab-master-1 from another state dir: exit %d, want 0 with the states restored, it joined again and etcd at 2 members", code)
	}
	for _, step := range []string{"lab-master-0", "lab-master-1", "lab-worker-0", "base-infrastructure"} {
		if data, err := os.ReadFile(filepath.Join(elsewhere, l.ClusterName, "terraform", step+".tfstate")); err != nil || string(data) != localState(t, l, step) {
			t.Errorf("the other state dir's %s state is not the bootstrap's (%v)", step, err)
		}
	}
	t.Logf("FIGURE vSphere converge joining again a master whose join was interrupted before etcd: %v", took.Round(100*time.Millisecond))

	// Back to 1 + 1: the configuration no longer has the new machine's address.
	out, code, took = run(ctx, t, l, dhctl(l, []string{"converge", sane}, template, l.ClusterName, e))
	for _, want := range []string{"master lab-master-1 leaves etcd (2 members, all healthy)", "etcd: 1 members, all healthy",
		"machine lab-master-1 destroyed"} {
		if !strings.Contains(out, want) {
			t.Errorf("converge back to 1 master + 1 worker does not say %q", want)
		}
	}
	if code != 0 {
		t.Fatalf("converge back to 1 master + 1 worker: exit %d", code)
	}
	t.Logf("FIGURE vSphere converge 2 + 1 → 1 + 1 (the master leaves etcd, is removed, its VM destroyed): %v", took.Round(100*time.Millisecond))
	checkNodes(ctx, t, l, "lab-master-0", "lab-worker-0")
	for _, vm := range []string{"lab-master-1"} {
		if slices.Contains(sim.VMNames(t, ctx), vm) {
			t.Errorf("VM %s is still there", vm)
		}
		if state := nodeStateInCluster(ctx, t, l, vm); state != "" {
			t.Errorf("the destroyed %s's state is still in the cluster", vm)
		}
	}
	rigtest.CheckClean(ctx, t, l.Machines[2], "converge removing lab-master-1")
	if out, code, _ := run(ctx, t, l, dhctl(l, []string{"converge", "--check"}, template, l.ClusterName, e)); code != 0 || !strings.Contains(out, "infrastructure lab-worker-0: InSync") {
		t.Errorf("converge --check after shrinking: exit %d, want 0", code)
	}
}

// addressEntry is one mainNetworkIPAddresses entry as vsphereCluster writes it.
func addressEntry(address, gateway string) string {
	return "    - address: " + address + "/24\n      gateway: " + gateway + "\n      nameservers: {}\n"
}

// checkNodes: the cluster's nodes are exactly names, all Ready.
func checkNodes(ctx context.Context, t *testing.T, l *lab.Lab, names ...string) {
	t.Helper()
	out, err := l.Kubectl(ctx, "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, n := range names {
		want = append(want, n+"=True")
	}
	if got := strings.Fields(out); !slices.Equal(got, want) {
		t.Errorf("nodes: %v, want %v", got, want)
	}
}

// nodeStateInCluster is a machine's infrastructure state as the cluster keeps it ("" when it
// keeps none).
func nodeStateInCluster(ctx context.Context, t *testing.T, l *lab.Lab, name string) string {
	t.Helper()
	out, err := l.Kubectl(ctx, "-n", "d8-system", "get", "secret", "d8-node-terraform-state-"+name, "--ignore-not-found", "-o", "jsonpath={.data.node-tf-state\\.json}")
	if err != nil {
		t.Fatal(err)
	}
	state, err := base64.StdEncoding.DecodeString(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(state)
}

// vmID is a VM's managed object id: a VM made again has a new one.
func vmID(ctx context.Context, t *testing.T, sim *vspheretest.Env, name string) string {
	t.Helper()
	obj, err := sim.Finder.VirtualMachine(ctx, "/"+vspheretest.Datacenter+"/vm/lab/"+name)
	if err != nil {
		t.Fatal(err)
	}
	return obj.Reference().Value
}

// vmMemory is a VM's memory in MiB.
func vmMemory(ctx context.Context, t *testing.T, sim *vspheretest.Env, name string) int32 {
	t.Helper()
	obj, err := sim.Finder.VirtualMachine(ctx, "/"+vspheretest.Datacenter+"/vm/lab/"+name)
	if err != nil {
		t.Fatal(err)
	}
	var m mo.VirtualMachine
	if err := obj.Properties(ctx, obj.Reference(), []string{"config.hardware"}, &m); err != nil {
		t.Fatal(err)
	}
	return m.Config.Hardware.MemoryMB
}

// destroyArgs is the `dhctl destroy` command line for a cloud cluster of the lab, confirmed.
func destroyArgs(l *lab.Lab, config, cluster string, e engine) []string {
	return append(append([]string{"destroy", "--yes-i-am-sane-and-i-understand-what-i-am-doing", "--config", config}, l.CommonArgs()...),
		"--cluster-name", cluster, "--terraform-binary", e.binary, "--terraform-plugins-dir", e.plugins)
}

// writeVariant writes the lab's configuration with each old string replaced by its new one
// (pairs) and returns its path.
func writeVariant(t *testing.T, l *lab.Lab, name string, pairs ...string) string {
	t.Helper()
	data, err := os.ReadFile(l.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("%s: the lab's configuration has no %q", name, pairs[i])
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	p := filepath.Join(l.Dir, name)
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// inSync reports whether dhctl's output says step's infrastructure is in sync.
func inSync(out, step string) bool {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "infrastructure in sync") && strings.Contains(line, step) {
			return true
		}
	}
	return false
}

// phaseTook is a phase's time in the summary's phase table ("status" when it did not run).
func phaseTook(out, phase string) string {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == phase {
			if len(f) >= 3 {
				return f[2]
			}
			return f[1]
		}
	}
	return "not in the summary"
}

// checkVMs: the simulator holds its own VMs and the cluster's two, sized as configured, with the
// first-boot data the configuration gives them.
func checkVMs(ctx context.Context, t *testing.T, sim *vspheretest.Env, before []string, masterIP, workerIP, publicKey string) {
	t.Helper()
	want := append(slices.Clone(before), "lab-master-0", "lab-worker-0")
	slices.Sort(want)
	if got := sim.VMNames(t, ctx); !slices.Equal(got, want) {
		t.Errorf("VMs: %v, want %v", got, want)
	}
	for _, vm := range []struct {
		name        string
		cpus, memMB int32
		address     string
	}{{"lab-master-0", 2, 2048, masterIP}, {"lab-worker-0", 1, 1024, workerIP}} { // vsphereCluster's instance classes
		obj, err := sim.Finder.VirtualMachine(ctx, "/"+vspheretest.Datacenter+"/vm/lab/"+vm.name)
		if err != nil {
			t.Errorf("VM %s in the folder lab: %v", vm.name, err)
			continue
		}
		var m mo.VirtualMachine
		if err := obj.Properties(ctx, obj.Reference(), []string{"config.hardware", "config.extraConfig"}, &m); err != nil {
			t.Errorf("VM %s: %v", vm.name, err)
			continue
		}
		if hw := m.Config.Hardware; hw.NumCPU != vm.cpus || hw.MemoryMB != vm.memMB {
			t.Errorf("VM %s: %d CPUs, %d MiB; want %d, %d", vm.name, hw.NumCPU, hw.MemoryMB, vm.cpus, vm.memMB)
		}
		// The first-boot data a real guest's cloud-init would read: its name, the SSH key and
		// the static address dhctl then reaches it at.
		var metadata string
		for _, o := range m.Config.ExtraConfig {
			if v := o.GetOptionValue(); v.Key == "guestinfo.metadata" {
				metadata, _ = v.Value.(string)
			}
		}
		raw, err := base64.StdEncoding.DecodeString(metadata)
		var md struct {
			Hostname string `json:"local-hostname"`
			Keys     string `json:"public-keys-data"`
		}
		if err == nil {
			err = json.Unmarshal(raw, &md)
		}
		if err != nil || md.Hostname != vm.name || strings.TrimSpace(md.Keys) != publicKey || !strings.Contains(string(raw), `"`+vm.address+`/24"`) {
			t.Errorf("VM %s: guestinfo.metadata %s (%v), want its name, the rig's public key and the address %s/24", vm.name, raw, err, vm.address)
		}
	}
}

// checkCluster: both nodes Ready under the layout's names with the machines' addresses, and the
// infrastructure's states and discovery data in the cluster.
func checkCluster(ctx context.Context, t *testing.T, l *lab.Lab, masterIP, workerIP string) {
	t.Helper()
	out, err := l.Kubectl(ctx, "get", "nodes", "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}`)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(out), "lab-master-0 True "+masterIP+"\nlab-worker-0 True "+workerIP; got != want {
		t.Errorf("nodes (name, Ready, InternalIP):\n%s\nwant:\n%s", got, want)
	}
	// The NodeGroups: master and the provider's worker group, both CloudPermanent (dhctl makes
	// their machines), worker with its entry's nodeTemplate.
	groups, err := l.Kubectl(ctx, "get", "nodegroups", "-o", `jsonpath={range .items[*]}{.metadata.name} {.spec.nodeType} {.spec.nodeTemplate.labels.dhctl\.example\.com/pool}{"\n"}{end}`)
	if got, want := strings.TrimSpace(groups), "master CloudPermanent \nworker CloudPermanent vsphere"; err != nil || got != want {
		t.Errorf("NodeGroups (name, nodeType, nodeTemplate label):\n%s (%v)\nwant:\n%s", got, err, want)
	}
	for _, s := range []string{"d8-system/d8-cluster-terraform-state", "d8-system/d8-node-terraform-state-lab-master-0",
		"d8-system/d8-node-terraform-state-lab-worker-0", "kube-system/d8-provider-cluster-configuration"} {
		ns, name, _ := strings.Cut(s, "/")
		if _, err := l.Kubectl(ctx, "-n", ns, "get", "secret", name, "-o", "name"); err != nil {
			t.Errorf("Secret %s: %v", s, err)
		}
	}
	enc, err := l.Kubectl(ctx, "-n", "kube-system", "get", "secret", "d8-provider-cluster-configuration", "-o", `jsonpath={.data.cloud-provider-discovery-data\.json}`)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	var d struct{ Datacenter string }
	if err == nil {
		err = json.Unmarshal(raw, &d)
	}
	if err != nil || d.Datacenter != "/"+vspheretest.Datacenter {
		t.Errorf("cloud-provider-discovery-data.json: %s (%v), want the datacenter /%s", raw, err, vspheretest.Datacenter)
	}
	t.Logf("cloud-provider-discovery-data.json: %s", raw)

	// The infrastructure states in the cluster are the ones in the state dir, each node's with
	// Deckhouse's labels and its node group's settings.
	inCluster := func(name, key string) string {
		enc, err := l.Kubectl(ctx, "-n", "d8-system", "get", "secret", name, "-o", "jsonpath={.data."+strings.ReplaceAll(key, ".", `\.`)+"}")
		if err != nil {
			t.Error(err)
			return ""
		}
		data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
		if err != nil {
			t.Errorf("Secret d8-system/%s %s: %v", name, key, err)
		}
		return string(data)
	}
	if got, want := inCluster("d8-cluster-terraform-state", "cluster-tf-state.json"), localState(t, l, "base-infrastructure"); got != want || want == "" {
		t.Errorf("d8-cluster-terraform-state differs from the local base-infrastructure state (%d and %d bytes)", len(got), len(want))
	}
	for node, group := range map[string]string{"lab-master-0": "master", "lab-worker-0": "worker"} {
		name := "d8-node-terraform-state-" + node
		if got, want := inCluster(name, "node-tf-state.json"), localState(t, l, node); got != want || want == "" {
			t.Errorf("%s differs from the local state of %s (%d and %d bytes)", name, node, len(got), len(want))
		}
		labels, err := l.Kubectl(ctx, "-n", "d8-system", "get", "secret", name, "-o", "jsonpath={.metadata.labels}")
		if err != nil {
			t.Error(err)
		}
		var lb map[string]string
		if err := json.Unmarshal([]byte(labels), &lb); err != nil || lb["node.deckhouse.io/node-group"] != group ||
			lb["node.deckhouse.io/node-name"] != node {
			t.Errorf("%s labels %s (%v): want node-group %s and node-name %s", name, labels, err, group, node)
		}
		var settings struct {
			InstanceClass struct{ NumCPUs int } `json:"instanceClass"`
		}
		if err := json.Unmarshal([]byte(inCluster(name, "node-group-settings.json")), &settings); err != nil || settings.InstanceClass.NumCPUs == 0 {
			t.Errorf("%s node-group-settings.json: %+v (%v), want the node group's instance class", name, settings, err)
		}
	}
}

// checkLogs: the vCenter password is in none of dhctl's debug logs (every cluster's of the
// state dir).
func checkLogs(t *testing.T, l *lab.Lab) {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(l.StateDir, "*", "logs", "*.log"))
	if len(logs) == 0 {
		t.Errorf("no debug logs under %s", l.StateDir)
	}
	for _, f := range logs {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Error(err)
		}
		if strings.Contains(string(data), vcenterPassword) {
			t.Errorf("the debug log %s holds the vCenter password", f)
		}
	}
}

// diskDelay and powerOnDelay hold the simulator's disk creations and power-ons back, as a real
// vCenter takes its time over them, and well below the 20 s after which the engine writes its
// state during an apply: a run killed meanwhile leaves what vCenter goes on to make outside any
// state.
const (
	diskDelay    = 8 * time.Second
	powerOnDelay = 8 * time.Second
)

// TestVsphereBootstrapKilled: dhctl killed (SIGKILL, the engine with it) while vCenter makes the
// master's data disk, then once the worker's VM exists and waits for its power-on. Each next run
// adopts what the killed one left (no second disk, no second VM), and the last one (node-infra
// alone) ends with the VMs a clean run makes.
func TestVsphereBootstrapKilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	l, sim, tofu, _ := start(ctx, t, 2, map[string]time.Duration{"CreateVirtualDisk_Task": diskDelay, "PowerOnVM_Task": powerOnDelay})
	before := sim.VMNames(t, ctx)
	master, worker := l.Machines[0], l.Machines[1]
	args := dhctl(l, []string{"bootstrap"}, l.ConfigPath, l.ClusterName, tofu)
	ds, err := sim.Finder.Datastore(ctx, vspheretest.Datastore)
	if err != nil {
		t.Fatal(err)
	}

	// Killed while vCenter makes the data disk: it is made, the VM never asked for.
	rigtest.KillWhen(t, l.Command(ctx, args...), "the master's data disk is under way", time.Second, func() bool {
		return rigtest.DebugLogHas(l, "bootstrap", "vsphere_virtual_disk.kubernetes_data: Creating...")
	})
	rigtest.WaitFor(ctx, t, 3*diskDelay, "the data disk the killed run asked for", func() (bool, string) {
		uuid, err := os.ReadFile(filepath.Join(l.StateDir, l.ClusterName, "cluster-uuid"))
		if err != nil {
			return false, err.Error()
		}
		file := "deckhouse/" + strings.TrimSpace(string(uuid)) + "-kubernetes-data-0.vmdk"
		if _, err := ds.Stat(ctx, file); err != nil {
			return false, fmt.Sprintf("%s: %v", file, err)
		}
		return true, ""
	})
	if slices.Contains(sim.VMNames(t, ctx), "lab-master-0") {
		t.Fatalf("the master's VM exists: the kill came too late")
	}
	if strings.Contains(localState(t, l, "lab-master-0"), "kubernetes_data") {
		t.Fatalf("the master's state holds the data disk: the kill came too late")
	}

	// The next run adopts the disk; killed once the worker's VM exists, before its power-on.
	out := rigtest.KillWhen(t, l.Command(ctx, args...), "the worker's VM is made", 0, func() bool {
		return slices.Contains(sim.VMNames(t, ctx), "lab-worker-0")
	})
	if !strings.Contains(out, "adopting a machine an interrupted run made") || !strings.Contains(out, "vsphere_virtual_disk.kubernetes_data") {
		t.Errorf("the run after the first kill did not adopt the master's data disk")
	}
	if strings.Contains(localState(t, l, "lab-worker-0"), "vsphere_virtual_machine") {
		t.Fatalf("the worker's state holds its VM: the kill came too late")
	}

	// The infrastructure's phases alone finish it: what follows node-infra is the bootstrap
	// TestVsphereBootstrap runs whole.
	out, code, took := run(ctx, t, l, dhctl(l, []string{"bootstrap", "--only-phase", "base-infra", "--only-phase", "node-infra"}, l.ConfigPath, l.ClusterName, tofu))
	if code != 0 {
		t.Fatalf("dhctl bootstrap --only-phase node-infra after two kills: exit %d", code)
	}
	t.Logf("FIGURE vSphere node-infra after two kills in it (disk creations and power-ons held back %v and %v): %v", diskDelay, powerOnDelay, took.Round(100*time.Millisecond))
	if !strings.Contains(out, "adopting a machine an interrupted run made") || !strings.Contains(out, "vsphere_virtual_machine.node") {
		t.Errorf("the last run did not adopt the worker's VM")
	}
	checkVMs(ctx, t, sim, before, master.Address.String(), worker.Address.String(), l.SSHPublicKey())
	checkLogs(t, l)
}

// localState is a step's Terraform state in the state dir ("" when there is none).
func localState(t *testing.T, l *lab.Lab, step string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(l.StateDir, l.ClusterName, "terraform", step+".tfstate"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(data)
}

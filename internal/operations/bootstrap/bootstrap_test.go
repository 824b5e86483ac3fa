package bootstrap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/exitcode"
	"github.com/dhctl-dev/dhctl/internal/inventory"
	"github.com/dhctl-dev/dhctl/internal/nodebundle"
	"github.com/dhctl-dev/dhctl/internal/phase"
	"github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/internal/state"
)

const clusterYAML = `apiVersion: deckhouse.io/v1
kind: ClusterConfiguration
clusterType: Static
podSubnetCIDR: 10.111.0.0/16
serviceSubnetCIDR: 10.222.0.0/16
kubernetesVersion: Automatic
clusterDomain: cluster.local
---
apiVersion: deckhouse.io/v1
kind: InitConfiguration
deckhouse:
  imagesRepo: registry.example.com/dhctl
  registryDockerCfg: eyJhdXRocyI6eyJyZWdpc3RyeS5leGFtcGxlLmNvbSI6eyJhdXRoIjoiZFRwdyJ9fX0=
---
apiVersion: deckhouse.io/v1
kind: StaticClusterConfiguration
internalNetworkCIDRs:
- 10.77.1.0/24
`

func load(t *testing.T, yaml string) (*config.Cluster, *config.VersionMap) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cluster.yml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(context.Background(), config.LoadOptions{ConfigPaths: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	vm, err := config.LoadVersionMap(candi.FS)
	if err != nil {
		t.Fatal(err)
	}
	return c, vm
}

func openState(t *testing.T) *clusterstate.Local {
	t.Helper()
	dir, err := state.Open(context.Background(), t.TempDir(), "unit")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	return clusterstate.NewLocal(dir)
}

func host(ip string, r inventory.Role) inventory.Host {
	return inventory.Host{SSH: ip, IP: ip, Role: r}
}

func newForTest(t *testing.T, l *clusterstate.Local, c *config.Cluster, vm *config.VersionMap, hosts ...inventory.Host) (*Bootstrap, *inventory.Inventory, error) {
	t.Helper()
	inv, err := inventory.New(hosts...)
	if err != nil {
		t.Fatal(err)
	}
	noSSH := errors.New("no SSH in unit tests")
	b, err := New(Options{Candi: candi.FS, Cluster: c, VersionMap: vm, State: l, Inventory: inv,
		Connect: func(context.Context, string) (*ssh.Client, error) { return nil, noSSH },
		Clients: func([]string) ([]*ssh.Client, error) { return nil, noSSH },
	})
	return b, inv, err
}

func paths(t *testing.T, ps []phase.Phase) []string {
	t.Helper()
	infos, err := phase.List(ps)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, i := range infos {
		out = append(out, i.Path+" | "+i.Title)
	}
	return out
}

// The tree the help, completion and bootstrap-phase commands are built from is the tree a
// configured bootstrap runs.
func TestTreeIsThePhasesOfARun(t *testing.T) {
	c, vm := load(t, clusterYAML)
	b, _, err := newForTest(t, openState(t), c, vm, host("10.77.1.10", inventory.Master), host("10.77.1.21", inventory.Worker))
	if err != nil {
		t.Fatal(err)
	}
	got, want := strings.Join(paths(t, b.Phases()), "\n"), strings.Join(paths(t, Tree()), "\n")
	if got != want {
		t.Errorf("a run's phases differ from Tree():\n%s\n---\n%s", got, want)
	}
	var names []string
	for _, p := range paths(t, Tree()) {
		names = append(names, strings.Split(p, " | ")[0])
	}
	wantPaths := "preflight base-infra node-infra connect prepare first-master grow grow/nodes grow/nodes/masters grow/nodes/workers grow/install grow/install/cni grow/install/node-groups grow/install/platform grow/install/cluster-state grow/install/dns grow/install/wait-platform grow/install/release-channel create-resources wait-cluster post-bootstrap-script"
	if strings.Join(names, " ") != wantPaths {
		t.Errorf("phases:\n got %s\nwant %s", strings.Join(names, " "), wantPaths)
	}
	// Every bootstrap-phase command names phases of the tree, each name exactly one phase (the
	// commands find them at any depth).
	infos, err := phase.List(Tree())
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, in := range infos {
		count[in.Name]++
	}
	for _, cmd := range Commands() {
		for _, p := range cmd.Phases {
			if count[p] != 1 {
				t.Errorf("command %s names %q, which %d phases of the tree have", cmd.Use, p, count[p])
			}
		}
	}
}

func TestNodeInputsFollowNodeConfigurationNotResources(t *testing.T) {
	c, vm := load(t, clusterYAML)
	b, _, err := newForTest(t, openState(t), c, vm, host("10.77.1.10", inventory.Master), host("10.77.1.21", inventory.Worker))
	if err != nil {
		t.Fatal(err)
	}
	in1, _ := b.nodeInputs("workers", b.workers)()
	c.Resources = append(c.Resources, config.Document{})
	in2, _ := b.nodeInputs("workers", b.workers)()
	if !equalJSON(t, in1, in2) {
		t.Error("resources changed the workers' inputs")
	}
	c.ClusterConfiguration.DefaultCRI = "Other"
	if in3, _ := b.nodeInputs("workers", b.workers)(); equalJSON(t, in1, in3) {
		t.Error("a ClusterConfiguration change did not change the workers' inputs")
	}
}

// Conditions are decided when a phase runs, from the inventory as it is then: a cloud bootstrap
// adds its machines after the tree was built.
func TestConditionsReadTheInventoryAtRunTime(t *testing.T) {
	c, vm := load(t, clusterYAML)
	b, inv, err := newForTest(t, openState(t), c, vm, host("10.77.1.10", inventory.Master))
	if err != nil {
		t.Fatal(err)
	}
	if b.noOtherMasters() == "" || b.noWorkers() == "" {
		t.Fatal("one master, no workers: both join phases should be skipped")
	}
	if err := inv.Add(host("10.77.1.11", inventory.Master)); err != nil {
		t.Fatal(err)
	}
	if err := inv.Add(host("10.77.1.21", inventory.Worker)); err != nil {
		t.Fatal(err)
	}
	if r := b.noOtherMasters(); r != "" {
		t.Errorf("a master added after the tree was built is not joined: %s", r)
	}
	if r := b.noWorkers(); r != "" {
		t.Errorf("a worker added after the tree was built is not joined: %s", r)
	}
	in, _ := b.nodeInputs(PhaseMasters, b.otherMasters)()
	if hs := in.(map[string]any)["hosts"].([]inventory.Host); len(hs) != 1 || hs[0].IP != "10.77.1.11" {
		t.Errorf("masters' inputs name %v", hs)
	}
}

func TestNewErrorsAreUsageOnlyWhenTheInputIsWrong(t *testing.T) {
	c, vm := load(t, clusterYAML)
	l := openState(t)
	if err := l.SaveInitSettings(nodebundle.InitSettingsOf(c)); err != nil {
		t.Fatal(err)
	}
	c2, _ := load(t, strings.Replace(strings.Replace(clusterYAML, "10.111.0.0/16", "10.112.0.0/16", 1), "cluster.local", "corp.local", 1))
	_, _, err := newForTest(t, l, c2, vm, host("10.77.1.10", inventory.Master))
	var u *nodebundle.UnsafeChangeError
	if !errors.As(err, &u) || len(u.Changes) != 2 || exitcode.ExitCode(err) != exitcode.UsageError {
		t.Fatalf("want a usage UnsafeChangeError with 2 changes, got %v (exit %d)", err, exitcode.ExitCode(err))
	}
	for _, want := range []string{"podSubnetCIDR", `"10.111.0.0/16" at init, now "10.112.0.0/16"`, "clusterDomain", "bootstrap-phase abort"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// A state dir that cannot be read is the machine's problem, not the user's input: exit 1.
	if err := l.Dir().WriteFile("bootstrap/init.json", []byte("{torn")); err != nil {
		t.Fatal(err)
	}
	_, _, err = newForTest(t, l, c, vm, host("10.77.1.10", inventory.Master))
	if err == nil || exitcode.ExitCode(err) != exitcode.Failed {
		t.Fatalf("damaged state: %v (exit %d), want exit 1", err, exitcode.ExitCode(err))
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	da, err := canonical(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := canonical(b)
	if err != nil {
		t.Fatal(err)
	}
	return da == db
}

// Before kubeadm init every machine is checked; after it, only machines not yet touched (the
// cluster's own would fail the leftovers and ports checks), and with none the phase is skipped.
func TestPreflightChecksOnlyNewMachinesOnceInitialised(t *testing.T) {
	c, vm := load(t, clusterYAML)
	l := openState(t)
	b, inv, err := newForTest(t, l, c, vm, host("10.77.1.10", inventory.Master), host("10.77.1.21", inventory.Worker))
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := b.preflightHosts()
	if err != nil || len(hosts) != 2 {
		t.Fatalf("before init: %v %v", hosts, err)
	}
	if err := l.SaveInitSettings(nodebundle.InitSettingsOf(c)); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"10.77.1.10", "10.77.1.21"} {
		if err := l.RecordHost(h, "master", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if r := b.preflightNotNeeded(); !strings.Contains(r, "already part of this cluster") {
		t.Errorf("every machine touched: skip reason %q", r)
	}
	if err := inv.Add(host("10.77.1.22", inventory.Worker)); err != nil {
		t.Fatal(err)
	}
	hosts, err = b.preflightHosts()
	if err != nil || len(hosts) != 1 || hosts[0].IP != "10.77.1.22" || b.preflightNotNeeded() != "" {
		t.Errorf("a new worker after init: checks %v (%v), skip %q", hosts, err, b.preflightNotNeeded())
	}
}

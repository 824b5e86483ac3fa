package bootstrap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/internal/config"
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

func newForTest(t *testing.T, dir *state.Dir, c *config.Cluster, vm *config.VersionMap, workers int) (*Bootstrap, error) {
	o := Options{Candi: candi.FS, Cluster: c, VersionMap: vm, State: dir,
		Connect: func(context.Context, string) (*ssh.Client, error) { return nil, errors.New("no SSH in unit tests") },
		Masters: []Host{{SSH: "10.77.1.10", IP: "10.77.1.10"}},
	}
	for i := range workers {
		ip := "10.77.1." + string(rune('1'+i)) + "1"
		o.Workers = append(o.Workers, Host{SSH: ip, IP: ip})
	}
	return New(o)
}

func TestPhaseTree(t *testing.T) {
	c, vm := load(t, clusterYAML)
	dir, err := state.Open(context.Background(), t.TempDir(), "unit")
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	b, err := newForTest(t, dir, c, vm, 1)
	if err != nil {
		t.Fatal(err)
	}
	infos, err := phase.List(b.Phases())
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, i := range infos {
		paths = append(paths, i.Path)
	}
	want := "connect first-master install install/cni install/node-groups install/platform install/cluster-state install/wait-platform nodes nodes/masters nodes/workers create-resources wait-cluster post-bootstrap-script"
	if got := strings.Join(paths, " "); got != want {
		t.Errorf("phases:\n got %s\nwant %s", got, want)
	}
	// Node phases depend on the node configuration, not on the resources.
	in1, _ := b.nodeInputs("workers", b.o.Workers)()
	c.Resources = append(c.Resources, config.Document{})
	in2, _ := b.nodeInputs("workers", b.o.Workers)()
	if !equalJSON(t, in1, in2) {
		t.Error("resources changed the workers' inputs")
	}
	c.ClusterConfiguration.DefaultCRI = "Other"
	if in3, _ := b.nodeInputs("workers", b.o.Workers)(); equalJSON(t, in1, in3) {
		t.Error("a ClusterConfiguration change did not change the workers' inputs")
	}
}

func TestDuplicateHostsAndNamesAreRefused(t *testing.T) {
	c, vm := load(t, clusterYAML)
	dir, err := state.Open(context.Background(), t.TempDir(), "unit")
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	_, err = New(Options{Candi: candi.FS, Cluster: c, VersionMap: vm, State: dir,
		Connect: func(context.Context, string) (*ssh.Client, error) { return nil, nil },
		Masters: []Host{{SSH: "a", IP: "10.0.0.1"}}, Workers: []Host{{SSH: "b", IP: "10.0.0.1"}}})
	if err == nil || !strings.Contains(err.Error(), "same node address") {
		t.Errorf("duplicate: %v", err)
	}
	_, err = New(Options{Candi: candi.FS, Cluster: c, VersionMap: vm, State: dir,
		Connect: func(context.Context, string) (*ssh.Client, error) { return nil, nil },
		Masters: []Host{{SSH: "master.example.com", IP: "master.example.com"}}})
	if err == nil || !strings.Contains(err.Error(), "not an IP address") {
		t.Errorf("name: %v", err)
	}
}

func TestUnsafeChangeAfterInitIsRefused(t *testing.T) {
	c, vm := load(t, clusterYAML)
	dir, err := state.Open(context.Background(), t.TempDir(), "unit")
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	if err := CheckUnsafeChanges(dir, c, vm); err != nil {
		t.Fatalf("nothing initialised yet: %v", err)
	}
	b, err := newForTest(t, dir, c, vm, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.writeJSON(InitStateFile, initSettingsOf(c, vm)); err != nil {
		t.Fatal(err)
	}
	if err := CheckUnsafeChanges(dir, c, vm); err != nil {
		t.Fatalf("same settings: %v", err)
	}
	c2, _ := load(t, strings.Replace(strings.Replace(clusterYAML, "10.111.0.0/16", "10.112.0.0/16", 1), "cluster.local", "corp.local", 1))
	_, err = newForTest(t, dir, c2, vm, 0)
	var u *UnsafeChangeError
	if !errors.As(err, &u) || len(u.Changes) != 2 {
		t.Fatalf("want an UnsafeChangeError with 2 changes, got %v", err)
	}
	for _, want := range []string{"podSubnetCIDR", `"10.111.0.0/16" at init, now "10.112.0.0/16"`, "clusterDomain", "bootstrap-phase abort"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if info, err := os.Stat(filepath.Join(dir.Path(), InitStateFile)); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v %v, want mode 0600", InitStateFile, info, err)
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

// After kubeadm init, a preflight whose hosts changed is skipped (the cluster's own machines would
// fail it), and says how to check a new machine.
func TestPreflightSkippedOnceInitialised(t *testing.T) {
	c, vm := load(t, clusterYAML)
	dir, err := state.Open(context.Background(), t.TempDir(), "unit")
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	ran := 0
	o := Options{Candi: candi.FS, Cluster: c, VersionMap: vm, State: dir,
		Connect:   func(context.Context, string) (*ssh.Client, error) { return nil, errors.New("no SSH") },
		Masters:   []Host{{SSH: "10.77.1.10", IP: "10.77.1.10"}},
		Preflight: func(context.Context) error { ran++; return nil },
	}
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	only := phase.Options{Only: []string{PhasePreflight}, Checkpoints: phase.NewDirCheckpoints(dir)}
	if _, err := phase.Run(context.Background(), b.Phases(), only); err != nil || ran != 1 {
		t.Fatalf("first preflight: ran %d, %v", ran, err)
	}
	if err := b.writeJSON(InitStateFile, initSettingsOf(c, vm)); err != nil {
		t.Fatal(err)
	}
	res, err := phase.Run(context.Background(), b.Phases(), only)
	p, _ := res.Get(PhasePreflight)
	if err != nil || ran != 1 || p.Status != phase.StatusSkippedCondition || !strings.Contains(p.Reason, "bootstrap-phase preflight") {
		t.Errorf("after init: ran %d, %v, %+v", ran, err, p)
	}
}

package clusterstate

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/internal/kubeadm"
	"github.com/dhctl-dev/dhctl/internal/state"
)

func openLocal(t *testing.T) *Local {
	t.Helper()
	d, err := state.Open(context.Background(), t.TempDir(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return NewLocal(d)
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestJoinAndInitSettingsRoundTripAsSecretFiles(t *testing.T) {
	l := openLocal(t)
	if j, err := l.Join(); err != nil || j.Ready() || j.MasterIP != "" {
		t.Fatalf("empty state: %+v %v", j, err)
	}
	if s, err := l.InitSettings(); err != nil || s != nil {
		t.Fatalf("empty state: %+v %v", s, err)
	}
	want := Join{MasterHost: "10.0.0.1:2222", MasterIP: "10.0.0.1",
		Join:    kubeadm.JoinInfo{APIServerEndpoint: "10.0.0.1:6443", Token: "abcdef.0123456789abcdef", CACertHash: "sha256:00"},
		Secrets: kubeadm.Secrets{Token: "abcdef.0123456789abcdef", CertificateKey: "k"}}
	if err := l.SaveJoin(want); err != nil {
		t.Fatal(err)
	}
	got, err := l.Join()
	if err != nil || got != want || !got.Ready() {
		t.Fatalf("join: %+v %v, want %+v", got, err, want)
	}
	if err := l.SaveInitSettings(InitSettings{PodSubnetCIDR: "10.1.0.0/16", KubernetesVersion: "1.33"}); err != nil {
		t.Fatal(err)
	}
	if s, err := l.InitSettings(); err != nil || s == nil || s.PodSubnetCIDR != "10.1.0.0/16" {
		t.Fatalf("init settings: %+v %v", s, err)
	}
	if err := l.SaveKubeconfig([]byte("apiVersion: v1\n")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{l.KubeconfigPath(), filepath.Join(l.Path(), joinFile), filepath.Join(l.Path(), initFile)} {
		if m := mode(t, p); m != 0o600 {
			t.Errorf("%s: mode %o, want 0600 (it holds secrets)", p, m)
		}
	}
}

func TestDamagedFilesSayWhatToDo(t *testing.T) {
	l := openLocal(t)
	if err := l.Dir().WriteFile(joinFile, []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	_, err := l.Join()
	if err == nil || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), "abort the bootstrap") || !strings.Contains(err.Error(), joinFile) {
		t.Fatalf("damaged join data: %v", err)
	}
	if err := l.Dir().WriteFile(uuidFile, []byte("nope\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ClusterUUID(); err == nil || !strings.Contains(err.Error(), UUIDConfigMap) {
		t.Fatalf("bad uuid: %v", err)
	}
}

func TestClusterUUIDIsMadeOnceAndKept(t *testing.T) {
	l := openLocal(t)
	a, err := l.ClusterUUID()
	if err != nil || !uuidPattern.MatchString(a) {
		t.Fatalf("%q %v", a, err)
	}
	b, err := l.ClusterUUID()
	if err != nil || a != b {
		t.Fatalf("second call: %q %v, want %q", b, err, a)
	}
}

func TestAdoptClusterUUIDOnlyIntoAStateDirWithoutOne(t *testing.T) {
	l := openLocal(t)
	const id = "0b6b4f6c-2f1e-4c8e-9a39-7d3a1f2b5c6d"
	for _, bad := range []string{"", "not-a-uuid", "0B6B4F6C-2F1E-4C8E-9A39-7D3A1F2B5C6D"} {
		if err := l.AdoptClusterUUID(bad); err == nil {
			t.Errorf("AdoptClusterUUID(%q) accepted it", bad)
		}
	}
	if err := l.AdoptClusterUUID(id); err != nil {
		t.Fatal(err)
	}
	if got, err := l.ClusterUUID(); err != nil || got != id {
		t.Fatalf("ClusterUUID after adopting: %q %v", got, err)
	}
	if err := l.AdoptClusterUUID(id); err != nil {
		t.Errorf("adopting the same UUID again: %v", err)
	}
	other := "1b6b4f6c-2f1e-4c8e-9a39-7d3a1f2b5c6d"
	err := l.AdoptClusterUUID(other)
	if err == nil || !strings.Contains(err.Error(), "belongs to cluster "+id) {
		t.Fatalf("adopting another cluster's UUID: %v", err)
	}
	if got, _ := l.ClusterUUID(); got != id {
		t.Errorf("a refused adoption changed the UUID to %q", got)
	}
}

// Workers join in parallel and each records its host before it is touched: no record may be lost.
func TestRecordHostConcurrentlyThenForget(t *testing.T) {
	l := openLocal(t)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	hosts := []string{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"}
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.RecordHost(h, "worker", base.Add(time.Duration(i)*time.Second)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := l.RecordHost("10.0.0.1", "master", base.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err := l.TouchedHosts()
	if err != nil || len(got) != 6 || got[0].Host != "10.0.0.1" {
		t.Fatalf("touched hosts: %+v %v", got, err)
	}
	if err := l.MarkCompleted(base); err != nil {
		t.Fatal(err)
	}
	if done, at, err := l.Completed(); err != nil || !done || !at.Equal(base) {
		t.Fatalf("completed: %v %v %v", done, at, err)
	}
	// One host could not be cleaned: it stays (with an unrecorded one), nothing is reset.
	reset, err := l.ForgetHosts(append([]string{"10.0.0.1"}, hosts[1:]...), []string{hosts[0], "10.9.9.9"}, base)
	if err != nil || reset {
		t.Fatalf("partial forget: reset %v, %v", reset, err)
	}
	got, _ = l.TouchedHosts()
	if len(got) != 2 || got[0].Host != hosts[0] || got[1].Role != "unknown" {
		t.Fatalf("left after a partial cleanup: %+v", got)
	}
	if err := l.SaveJoin(Join{MasterIP: "10.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	uuid, _ := l.ClusterUUID()
	reset, err = l.ForgetHosts([]string{hosts[0], "10.9.9.9"}, nil, base)
	if err != nil || !reset {
		t.Fatalf("full forget: reset %v, %v", reset, err)
	}
	if j, _ := l.Join(); j.MasterIP != "" {
		t.Error("join data survived the reset")
	}
	if done, _, _ := l.Completed(); done {
		t.Error("the completion mark survived the reset")
	}
	if again, _ := l.ClusterUUID(); again != uuid {
		t.Error("the cluster UUID changed on reset: the machines are the same cluster name")
	}
}

func TestTerraformStatesPerStep(t *testing.T) {
	l := openLocal(t)
	if data, err := l.TerraformState(BaseInfrastructure); err != nil || data != nil {
		t.Fatalf("no state yet: %q %v", data, err)
	}
	for _, step := range []string{BaseInfrastructure, "lab-master-0", "lab-worker-1"} {
		if err := l.SaveTerraformState(step, []byte(`{"version":4,"serial":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.SaveTerraformState("../escape", []byte("x")); err == nil {
		t.Error("a step name with a path in it was accepted")
	}
	steps, err := l.TerraformSteps()
	if err != nil || strings.Join(steps, ",") != "base-infrastructure,lab-master-0,lab-worker-1" {
		t.Fatalf("steps: %v %v", steps, err)
	}
	if m := mode(t, filepath.Join(l.Path(), terraformDir, "lab-master-0.tfstate")); m != 0o600 {
		t.Errorf("terraform state mode %o, want 0600", m)
	}
	if err := l.RemoveTerraformState("lab-worker-1"); err != nil {
		t.Fatal(err)
	}
	if steps, _ := l.TerraformSteps(); len(steps) != 2 {
		t.Errorf("after remove: %v", steps)
	}
}

func TestRecordHostKeepsOrderAndIsIdempotent(t *testing.T) {
	l := openLocal(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, h := range []struct{ host, role string }{{"10.0.0.1", "master"}, {"10.0.0.2:2222", "worker"}, {"10.0.0.1", "master"}, {"10.0.0.2:2222", "master"}} {
		if err := l.RecordHost(h.host, h.role, t0.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := l.TouchedHosts()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Host != "10.0.0.1" || got[1].Host != "10.0.0.2:2222" || got[1].Role != "master" || !got[1].FirstSeen.Equal(t0.Add(time.Minute)) {
		t.Fatalf("recorded hosts = %+v", got)
	}
	fi, err := os.Stat(filepath.Join(l.Path(), hostsFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v", hostsFile, fi, err)
	}
}

func TestTouchedHostsNoneAndInvalid(t *testing.T) {
	l := openLocal(t)
	if got, err := l.TouchedHosts(); err != nil || got != nil {
		t.Fatalf("no record: %v %v", got, err)
	}
	if err := l.Dir().WriteFile(hostsFile, []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.TouchedHosts(); err == nil {
		t.Fatal("an invalid record was accepted")
	}
}

func TestCompleted(t *testing.T) {
	l := openLocal(t)
	if done, _, err := l.Completed(); err != nil || done {
		t.Fatalf("fresh dir: completed=%v err=%v", done, err)
	}
	at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := l.MarkCompleted(at); err != nil {
		t.Fatal(err)
	}
	if done, when, err := l.Completed(); err != nil || !done || !when.Equal(at) {
		t.Fatalf("after MarkCompleted: %v %v %v", done, when, err)
	}
}

func TestForget(t *testing.T) {
	l := openLocal(t)
	now := time.Now()
	for _, h := range []string{"a", "b"} {
		if err := l.RecordHost(h, "master", now); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"checkpoints/preflight.json", "node/join.json", "kubeconfig", "bootstrap/init.json", "packages/keep", "known_hosts", "cluster-uuid"} {
		if err := l.Dir().WriteFile(f, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.MarkCompleted(now); err != nil {
		t.Fatal(err)
	}
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(l.Path(), name))
		return err == nil
	}

	// b and c (given on the command line only) unreachable: a is forgotten, b stays, c joins,
	// nothing else is reset.
	reset, err := l.ForgetHosts([]string{"a"}, []string{"b", "c"}, now.Add(time.Second))
	if err != nil || reset {
		t.Fatalf("partial: reset=%v err=%v", reset, err)
	}
	if got, _ := l.TouchedHosts(); len(got) != 2 || got[0].Host != "b" || got[1].Host != "c" || got[1].Role != "unknown" {
		t.Fatalf("after a partial abort the record holds %+v, want b and c", got)
	}
	if !exists("checkpoints/preflight.json") || !exists("kubeconfig") {
		t.Fatal("a partial abort reset the state")
	}

	// Then b is cleaned: the state a new bootstrap must not see is gone, the rest stays.
	if reset, err = l.ForgetHosts([]string{"b", "c"}, nil, now); err != nil || !reset {
		t.Fatalf("complete: reset=%v err=%v", reset, err)
	}
	for _, gone := range []string{"checkpoints", "node", "kubeconfig", "bootstrap", completedFile} {
		if exists(gone) {
			t.Errorf("%s left after the abort", gone)
		}
	}
	for _, kept := range []string{"packages/keep", "known_hosts", "cluster-uuid"} {
		if !exists(kept) {
			t.Errorf("%s removed by the abort", kept)
		}
	}
	// Twice is fine.
	if reset, err = l.ForgetHosts(nil, nil, now); err != nil || !reset {
		t.Fatalf("second abort: reset=%v err=%v", reset, err)
	}
}

func TestMachinesAndDiscoveryData(t *testing.T) {
	l := openLocal(t)
	if ms, err := l.Machines(); err != nil || len(ms) != 0 {
		t.Fatalf("none yet: %v %v", ms, err)
	}
	for _, m := range []Machine{{Name: "lab-worker-0", Role: "worker", IP: "10.0.0.3"}, {Name: "lab-master-0", Role: "master", IP: "10.0.0.2"}, {Name: "lab-worker-0", Role: "worker", IP: "10.0.0.4"}} {
		if err := l.RecordMachine(m); err != nil {
			t.Fatal(err)
		}
	}
	ms, _ := l.Machines()
	if len(ms) != 2 || ms[0].Name != "lab-master-0" || ms[1].IP != "10.0.0.4" {
		t.Errorf("machines: %+v (sorted by name, the worker replaced)", ms)
	}
	if err := l.ForgetMachine("lab-worker-0"); err != nil {
		t.Fatal(err)
	}
	if ms, _ := l.Machines(); len(ms) != 1 {
		t.Errorf("after forget: %+v", ms)
	}
	if d, err := l.DiscoveryData(); err != nil || d != nil {
		t.Fatalf("no discovery data yet: %q %v", d, err)
	}
	if err := l.SaveDiscoveryData([]byte(`{"zones":["a"]}`)); err != nil {
		t.Fatal(err)
	}
	if d, _ := l.DiscoveryData(); string(d) != `{"zones":["a"]}` {
		t.Errorf("discovery data %q", d)
	}
}

// A destroy's progress mark is kept until the cluster is forgotten, then gone with it.
func TestResourcesDeletedUntilForgotten(t *testing.T) {
	l := openLocal(t)
	if done, _, err := l.ResourcesDeleted(); err != nil || done {
		t.Fatalf("fresh dir: deleted=%v err=%v", done, err)
	}
	at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := l.RecordHost("a", "master", at); err != nil {
		t.Fatal(err)
	}
	if err := l.MarkResourcesDeleted(at); err != nil {
		t.Fatal(err)
	}
	if done, when, err := l.ResourcesDeleted(); err != nil || !done || !when.Equal(at) {
		t.Fatalf("after MarkResourcesDeleted: %v %v %v", done, when, err)
	}
	if _, err := l.ForgetHosts(nil, []string{"a"}, at); err != nil {
		t.Fatal(err)
	}
	if done, _, _ := l.ResourcesDeleted(); !done {
		t.Error("a host still to clean, yet the mark is gone: a re-run would go to the API server again")
	}
	if reset, err := l.ForgetHosts([]string{"a"}, nil, at); err != nil || !reset {
		t.Fatalf("ForgetHosts = %v, %v", reset, err)
	}
	if done, _, _ := l.ResourcesDeleted(); done {
		t.Error("the cluster is forgotten, yet its destroy mark stays: a new cluster's destroy would skip its objects")
	}
}

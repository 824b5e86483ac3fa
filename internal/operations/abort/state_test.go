package abort

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/internal/state"
)

func openDir(t *testing.T) *state.Dir {
	t.Helper()
	d, err := state.Open(context.Background(), t.TempDir(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestRecordHostKeepsOrderAndIsIdempotent(t *testing.T) {
	d := openDir(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, h := range []struct{ host, role string }{{"10.0.0.1", "master"}, {"10.0.0.2:2222", "worker"}, {"10.0.0.1", "master"}, {"10.0.0.2:2222", "master"}} {
		if err := RecordHost(d, h.host, h.role, t0.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := TouchedHosts(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Host != "10.0.0.1" || got[1].Host != "10.0.0.2:2222" || got[1].Role != "master" || !got[1].FirstSeen.Equal(t0.Add(time.Minute)) {
		t.Fatalf("recorded hosts = %+v", got)
	}
	fi, err := os.Stat(filepath.Join(d.Path(), HostsFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v", HostsFile, fi, err)
	}
}

func TestTouchedHostsNoneAndInvalid(t *testing.T) {
	d := openDir(t)
	if got, err := TouchedHosts(d); err != nil || got != nil {
		t.Fatalf("no record: %v %v", got, err)
	}
	if err := d.WriteFile(HostsFile, []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := TouchedHosts(d); err == nil {
		t.Fatal("an invalid record was accepted")
	}
}

func TestCompleted(t *testing.T) {
	d := openDir(t)
	if done, _, err := Completed(d); err != nil || done {
		t.Fatalf("fresh dir: completed=%v err=%v", done, err)
	}
	at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := MarkCompleted(d, at); err != nil {
		t.Fatal(err)
	}
	if done, when, err := Completed(d); err != nil || !done || !when.Equal(at) {
		t.Fatalf("after MarkCompleted: %v %v %v", done, when, err)
	}
}

func TestForget(t *testing.T) {
	d := openDir(t)
	now := time.Now()
	for _, h := range []string{"a", "b"} {
		if err := RecordHost(d, h, "master", now); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"checkpoints/preflight.json", "node/join.json", "kubeconfig", "packages/keep", "pinned_hosts"} {
		if err := d.WriteFile(f, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := MarkCompleted(d, now); err != nil {
		t.Fatal(err)
	}
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(d.Path(), name))
		return err == nil
	}

	// b and c (given on the command line only) unreachable: a is forgotten, b stays, c joins,
	// nothing else is reset.
	reset, err := Forget(d, []string{"a"}, []string{"b", "c"}, now.Add(time.Second))
	if err != nil || reset {
		t.Fatalf("partial: reset=%v err=%v", reset, err)
	}
	if got, _ := TouchedHosts(d); len(got) != 2 || got[0].Host != "b" || got[1].Host != "c" || got[1].Role != "unknown" {
		t.Fatalf("after a partial abort the record holds %+v, want b and c", got)
	}
	if !exists("checkpoints/preflight.json") || !exists("kubeconfig") {
		t.Fatal("a partial abort reset the state")
	}

	// Then b is cleaned: the state a new bootstrap must not see is gone, the rest stays.
	if reset, err = Forget(d, []string{"b", "c"}, nil, now); err != nil || !reset {
		t.Fatalf("complete: reset=%v err=%v", reset, err)
	}
	for _, gone := range []string{"checkpoints", "node", "kubeconfig", CompletedFile} {
		if exists(gone) {
			t.Errorf("%s left after the abort", gone)
		}
	}
	for _, kept := range []string{"packages/keep", "pinned_hosts"} {
		if !exists(kept) {
			t.Errorf("%s removed by the abort", kept)
		}
	}
	// Twice is fine.
	if reset, err = Forget(d, nil, nil, now); err != nil || !reset {
		t.Fatalf("second abort: reset=%v err=%v", reset, err)
	}
}

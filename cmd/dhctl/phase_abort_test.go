package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/state"
)

// The abort command's refusals, before any host is touched (the cleanup itself is shown on the
// rig by e2e/abort).
func TestAbortRefusals(t *testing.T) {
	root := t.TempDir()
	base := []string{"bootstrap-phase", "abort", "--state-dir", root, "--cluster-name", "c1"}

	// Nothing recorded and no --ssh-host: nothing to clean.
	code, _, errOut := runCLI(t, nil, base...)
	if code != 2 || !strings.Contains(errOut, "no hosts to clean") {
		t.Fatalf("no hosts: exit %d, %q", code, errOut)
	}

	// Not confirmed (stdin is empty): exit 3, the record untouched.
	d, err := state.Open(context.Background(), root, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if err := clusterstate.NewLocal(d).RecordHost("192.0.2.10", "master", time.Now()); err != nil {
		t.Fatal(err)
	}
	d.Close()
	code, _, errOut = runCLI(t, nil, base...)
	if code != 3 || !strings.Contains(errOut, "192.0.2.10") || !strings.Contains(errOut, "abort not confirmed") {
		t.Fatalf("unconfirmed: exit %d, %q", code, errOut)
	}
	if d, err = state.Open(context.Background(), root, "c1"); err != nil {
		t.Fatal(err)
	}
	if hosts, err := clusterstate.NewLocal(d).TouchedHosts(); err != nil || len(hosts) != 1 {
		t.Fatalf("an unconfirmed abort changed the state: %v %v", hosts, err)
	}
	d.Close()

	// A finished bootstrap is refused even with the confirmation flag.
	if d, err = state.Open(context.Background(), root, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := clusterstate.NewLocal(d).MarkCompleted(time.Now()); err != nil {
		t.Fatal(err)
	}
	d.Close()
	code, _, errOut = runCLI(t, nil, append(base, "--yes-i-am-sane-and-i-understand-what-i-am-doing")...)
	if code != 2 || !strings.Contains(errOut, "--force-abort-finished-cluster") {
		t.Fatalf("finished cluster: exit %d, %q", code, errOut)
	}
}

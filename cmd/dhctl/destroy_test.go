package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/state"
)

// destroy's answers before any machine is touched (the teardown itself is shown on the rig).
func TestDestroyRefusalsAndAlreadyDestroyed(t *testing.T) {
	root := t.TempDir()
	base := []string{"destroy", "--state-dir", root, "--cluster-name", "c1", "--skip-resources"}
	code, out, errOut := runCLI(t, nil, base...)
	if code != 0 || !strings.Contains(out, "already destroyed") {
		t.Fatalf("nothing recorded: exit %d, %q %q", code, out, errOut)
	}
	d, err := state.Open(context.Background(), root, "c1")
	if err != nil {
		t.Fatal(err)
	}
	l := clusterstate.NewLocal(d)
	if err := l.RecordHost("192.0.2.10", "master", time.Now()); err != nil {
		t.Fatal(err)
	}
	d.Close()
	code, _, errOut = runCLI(t, nil, base...)
	if code != 3 || !strings.Contains(errOut, "node 192.0.2.10") || !strings.Contains(errOut, "destroy not confirmed") {
		t.Fatalf("unconfirmed: exit %d, %q", code, errOut)
	}
	if d, err = state.Open(context.Background(), root, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := clusterstate.NewLocal(d).SaveTerraformState("base-infrastructure", []byte(`{"version":4}`)); err != nil {
		t.Fatal(err)
	}
	d.Close()
	code, _, errOut = runCLI(t, nil, base...)
	if code != 2 || !strings.Contains(errOut, "give its --config") {
		t.Fatalf("cloud state without --config: exit %d, %q", code, errOut)
	}
}

package rig

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/internal/testctx"
)

// sweepChildEnv makes the test binary act as a run that gets killed: it
// starts a rig with one machine, prints the rig's state directory and waits.
const sweepChildEnv = "DHCTL_RIG_SWEEP_CHILD_STATE_DIR"

func TestMain(m *testing.M) {
	if stateDir := os.Getenv(sweepChildEnv); stateDir != "" {
		os.Exit(sweepChild(stateDir))
	}
	os.Exit(m.Run())
}

func sweepChild(stateDir string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := New(ctx, Options{StateDir: stateDir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ms, err := r.StartMachines(ctx, 1)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("%s %s\n", r.Dir(), strings.Join(ms[0].cgroups, " "))
	<-ctx.Done() // killed long before
	return 1
}

// startChildRig runs a rig with one machine in a child process and returns
// the child, a Rig value naming what the child made, and its machine cgroups.
func startChildRig(t *testing.T, ctx context.Context, stateDir string) (*exec.Cmd, *Rig, []string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), sweepChildEnv+"="+stateDir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child rig did not start: %v", err)
	}
	fields := strings.Fields(line)
	dir, cgroups := fields[0], fields[1:]
	return cmd, &Rig{id: filepath.Base(dir), dir: dir, netns: netnsPrefix + filepath.Base(dir)}, cgroups
}

// An interrupted run cleans up after itself, before dying of the signal.
func TestInterruptCleansUp(t *testing.T) {
	ctx, cancel := testctx.New(t, 10*time.Minute)
	defer cancel()
	stateDir := t.TempDir()
	cmd, r, cgroups := startChildRig(t, ctx, stateDir)
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGINT {
		t.Errorf("child after SIGINT: %v, want death by SIGINT after cleanup", err)
	}
	assertNoLeftovers(t, r, cgroups)
}

func TestSweepRemovesKilledRun(t *testing.T) {
	ctx, cancel := testctx.New(t, 10*time.Minute)
	defer cancel()
	stateDir := t.TempDir()
	cmd, r, cgroups := startChildRig(t, ctx, stateDir)
	// SIGKILL: the child cannot clean anything up.
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if _, err := os.Stat(r.NetNS()); err != nil {
		t.Fatalf("killed run left no namespace to sweep: %v", err)
	}
	if len(cgroupPIDs(cgroups[0])) == 0 {
		t.Fatalf("killed run left no machine process to sweep")
	}
	start := time.Now()
	if err := Sweep(ctx, stateDir); err != nil {
		t.Fatal(err)
	}
	t.Logf("sweep took %v", time.Since(start))
	assertNoLeftovers(t, r, cgroups)
}

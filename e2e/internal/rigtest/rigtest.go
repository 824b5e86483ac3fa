// Package rigtest holds the small test helpers every e2e package on the rig needs: starting a
// lab for a test, running a command for its exit code, polling a condition with a bound, and
// asserting a command's output on a machine.
package rigtest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/internal/lab"
	"github.com/dhctl-dev/dhctl/e2e/rig"
)

// StartLab starts a lab for the test (in a temporary directory, dhctl built from this checkout)
// and tears it down when the test ends, passed or failed; it fails the test if the lab does not
// come up.
func StartLab(ctx context.Context, tb testing.TB, o lab.Options) *lab.Lab {
	tb.Helper()
	if o.Dir == "" {
		o.Dir = tb.TempDir()
	}
	if o.Checkout == "" {
		// The test runs in e2e/<pkg>: the checkout is two levels up.
		checkout, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			tb.Fatal(err)
		}
		o.Checkout = checkout
	}
	if o.Logf == nil {
		o.Logf = tb.Logf
	}
	start := time.Now()
	l, err := lab.Start(ctx, o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := l.Close(); err != nil {
			tb.Errorf("rig Close: %v", err)
		}
	})
	tb.Logf("lab with %d machines ready in %v", len(l.Machines), time.Since(start).Round(100*time.Millisecond))
	return l
}

// Run runs cmd to its end and returns its combined output, exit code and wall time; it fails
// the test if cmd did not run (or end) at all.
func Run(tb testing.TB, cmd *exec.Cmd) (string, int, time.Duration) {
	tb.Helper()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		tb.Fatal(err)
	}
	return string(out), cmd.ProcessState.ExitCode(), took
}

// WaitFor polls cond every 2 s until it holds, fails the test once d passed (or ctx ended) with
// what was awaited and cond's last output.
func WaitFor(ctx context.Context, tb testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ok, out := cond()
		if ok {
			return
		}
		last = out
		time.Sleep(2 * time.Second)
	}
	tb.Fatalf("timed out after %v waiting for %s; last output:\n%s", d, what, last)
}

// MustRun runs cmd on m and fails the test unless it succeeds with want in its output.
func MustRun(ctx context.Context, tb testing.TB, m *rig.Machine, cmd, want string) {
	tb.Helper()
	out, err := m.Run(ctx, cmd, nil)
	if err != nil || !strings.Contains(out, want) {
		tb.Fatalf("%s on %s: %q, %v; want %q", cmd, m.Name, out, err, want)
	}
}

// KillWhen starts cmd, SIGKILLs it `after` cond first holds (polled every 100 ms) and returns
// what it printed; it fails the test if cmd ends first.
func KillWhen(tb testing.TB, cmd *exec.Cmd, what string, after time.Duration, cond func() bool) string {
	tb.Helper()
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			tb.Fatalf("%s ended (%v) before %s:\n%s", filepath.Base(cmd.Path), err, what, out.String())
		case <-tick.C:
			if !cond() {
				continue
			}
			time.Sleep(after)
			if err := cmd.Process.Kill(); err != nil {
				tb.Fatal(err)
			}
			err := <-done
			tb.Logf("killed once %s (%v):\n%s", what, err, out.String())
			return out.String()
		}
	}
}

// lockedBuffer is a buffer a command writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// DebugLogHas reports whether the newest debug log of command (e.g. "bootstrap") for the lab's
// cluster holds s.
func DebugLogHas(l *lab.Lab, command, s string) bool {
	logs, _ := filepath.Glob(filepath.Join(l.StateDir, l.ClusterName, "logs", "*-"+command+".log"))
	if len(logs) == 0 {
		return false
	}
	sort.Strings(logs)
	data, err := os.ReadFile(logs[len(logs)-1])
	return err == nil && strings.Contains(string(data), s)
}

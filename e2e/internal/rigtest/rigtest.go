// Package rigtest holds the small test helpers every e2e package on the rig needs: starting a
// lab for a test, running a command for its exit code, polling a condition with a bound, and
// asserting a command's output on a machine.
package rigtest

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
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

// Package rigtest holds the small test helpers every e2e package on the rig needs: polling a
// condition with a bound, asserting a command's output on a machine, and building the dhctl
// binary of this checkout.
package rigtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/rig"
)

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

// BuildDhctl builds the dhctl binary of this checkout into dir (the test runs in e2e/<pkg>, so
// the checkout is two levels up) and returns its path.
func BuildDhctl(ctx context.Context, tb testing.TB, dir string) string {
	tb.Helper()
	bin := filepath.Join(dir, "dhctl")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/dhctl")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building dhctl: %v\n%s", err, out)
	}
	return bin
}

// Command is the dhctl binary bin with args, run inside r's network namespace (where the
// machines are) with only PATH and HOME=home in its environment, as an operator on that
// network runs it.
func Command(ctx context.Context, r *rig.Rig, bin, home string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + r.NetNS(), bin}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home}
	return cmd
}

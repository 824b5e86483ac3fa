package node

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/candi"
)

// runDriver runs the real driver (candi/bashible/bashible.sh) with bash over a bundle of given
// steps, keeping its state in a temporary directory.
func runDriver(t *testing.T, bundle, state string, steps map[string]string) (string, error) {
	t.Helper()
	driver, err := candi.FS.ReadFile("bashible/bashible.sh")
	if err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(bundle, "steps"))
	if err := os.MkdirAll(filepath.Join(bundle, "steps"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "bashible.sh"), driver, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, body := range steps {
		if err := os.WriteFile(filepath.Join(bundle, "steps", name+".sh"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(bundle, "bashible.sh"))
	cmd.Env = append(os.Environ(), "DHCTL_BASHIBLE_STATE="+state, "DHCTL_BASHIBLE_LOCK_WAIT=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func markers(out string) string {
	var m []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "::step ") {
			f := strings.Fields(l)
			m = append(m, f[1]+" "+f[2])
		}
	}
	return strings.Join(m, ", ")
}

func TestDriverRerunsOnlyWhatChangedOrFailed(t *testing.T) {
	bundle, state := t.TempDir(), t.TempDir()
	steps := map[string]string{
		"010_a": "echo a\n",
		"020_b": "echo b\n",
		"030_c": "echo c\n",
	}
	out, err := runDriver(t, bundle, state, steps)
	if err != nil || markers(out) != "010_a started, 010_a done, 020_b started, 020_b done, 030_c started, 030_c done" || !strings.Contains(out, "::bundle done") {
		t.Fatalf("first run: %v\n%s", err, out)
	}
	out, err = runDriver(t, bundle, state, steps)
	if err != nil || markers(out) != "010_a skipped, 020_b skipped, 030_c skipped" {
		t.Fatalf("unchanged re-run: %v\n%s", err, out)
	}
	// A changed step fails: the steps after it do not run, the error carries its last lines.
	steps["020_b"] = "for i in $(seq 30); do echo line $i; done\nexit 7\n"
	out, err = runDriver(t, bundle, state, steps)
	if err == nil || markers(out) != "010_a skipped, 020_b started, 020_b failed" {
		t.Fatalf("failing step: %v\n%s", err, out)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Errorf("exit code: %v", err)
	}
	if !strings.Contains(out, "::tail line 30") || strings.Contains(out, "::tail line 10\n") {
		t.Errorf("tail of the failed step (last 20 lines):\n%s", out)
	}
	// Fixed: the failed step runs again; 030_c, unchanged since it succeeded, is skipped.
	steps["020_b"] = "echo b fixed\n"
	out, err = runDriver(t, bundle, state, steps)
	if err != nil || markers(out) != "010_a skipped, 020_b started, 020_b done, 030_c skipped" {
		t.Fatalf("after the fix: %v\n%s", err, out)
	}
}

func TestDriverOneRunAtATime(t *testing.T) {
	bundle, state := t.TempDir(), t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	holder := exec.CommandContext(ctx, "flock", filepath.Join(state, "lock"), "sleep", "30")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer holder.Wait()
	defer cancel()
	for i := 0; i < 50; i++ { // until the holder has the lock
		if exec.Command("flock", "-n", filepath.Join(state, "lock"), "true").Run() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, err := runDriver(t, bundle, state, map[string]string{"010_a": "echo a\n"})
	if err == nil || !strings.Contains(out, "::step lock failed") || !strings.Contains(out, "another run of the node bundle") || strings.Contains(out, "010_a") {
		t.Fatalf("second run while the lock is held: %v\n%s", err, out)
	}
}

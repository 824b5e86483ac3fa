package phase

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

	"github.com/dhctl-dev/dhctl/internal/state"
)

// The test binary doubles as a dhctl-like process running phases, so that a run can be killed
// with SIGKILL for real: with DHCTL_PHASE_HELPER set, TestMain runs helperRun instead of tests.
const helperEnv = "DHCTL_PHASE_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperRun())
	}
	os.Exit(m.Run())
}

// appendPhase is a resumable phase that appends its name to a run log (what ran, across
// processes) and, if it is the phase to block in, announces it and hangs until killed.
type appendPhase struct {
	name, runLog, block, inputs string
}

func (p *appendPhase) Name() string         { return p.name }
func (p *appendPhase) Title() string        { return p.name }
func (p *appendPhase) Inputs() (any, error) { return map[string]string{"version": p.inputs}, nil }
func (p *appendPhase) Run(ctx context.Context) error {
	f, err := os.OpenFile(p.runLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, p.name)
	f.Close()
	if err != nil {
		return err
	}
	if p.block == p.name {
		fmt.Println("blocking " + p.name)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Minute): // the test kills us long before; bounded anyway
			return errors.New("helper was not killed within a minute")
		}
	}
	return nil
}

func helperRun() int {
	runLog, block, inputs := os.Getenv("HELPER_RUNLOG"), os.Getenv("HELPER_BLOCK"), os.Getenv("HELPER_INPUTS")
	ph := func(name string) Phase { return &appendPhase{name: name, runLog: runLog, block: block, inputs: inputs} }
	d, err := state.Open(context.Background(), os.Getenv("HELPER_ROOT"), "c")
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer d.Close()
	tree := []Phase{ph("prepare"), NewGroup("install", "Install", ph("cni"), ph("api")), ph("finish")}
	res, err := Run(context.Background(), tree, Options{Checkpoints: NewDirCheckpoints(d)})
	fmt.Println("result", statuses(res))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	return 0
}

// runHelper starts a helper run and returns its stdout lines and the command.
func runHelper(t *testing.T, root, runLog, block, inputs string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=1", "HELPER_ROOT="+root, "HELPER_RUNLOG="+runLog, "HELPER_BLOCK="+block, "HELPER_INPUTS="+inputs)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	return cmd, lines
}

func nextLine(t *testing.T, lines <-chan string) string {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatal("helper exited without the expected output")
		}
		return l
	case <-time.After(30 * time.Second):
		t.Fatal("helper printed nothing within 30s")
	}
	return ""
}

func waitExit(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("helper did not exit within 30s")
	}
	return cmd.ProcessState.ExitCode()
}

// completeRun runs the helper to the end and returns its result line and what it ran.
func completeRun(t *testing.T, root, runLog, inputs string) (string, string) {
	t.Helper()
	os.Remove(runLog)
	cmd, lines := runHelper(t, root, runLog, "", inputs)
	result := nextLine(t, lines)
	if code := waitExit(t, cmd); code != 0 {
		t.Fatalf("helper run failed (exit %d): %s", code, result)
	}
	return result, readRunLog(t, runLog)
}

func readRunLog(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(data)), " ")
}

func TestKilledRunResumes(t *testing.T) {
	root := t.TempDir()
	runLog := filepath.Join(t.TempDir(), "ran")
	checkpoint := func(path string) bool {
		_, err := os.Stat(filepath.Join(root, "c", "checkpoints", path+".json"))
		return err == nil
	}

	// 1. A complete run with inputs v0: every leaf gets a checkpoint.
	if _, ran := completeRun(t, root, runLog, "v0"); ran != "prepare cni api finish" {
		t.Fatalf("first run ran %q", ran)
	}

	// 2. Inputs change to v1; the run is killed with SIGKILL in the middle of install/cni.
	os.Remove(runLog)
	cmd, lines := runHelper(t, root, runLog, "cni", "v1")
	if l := nextLine(t, lines); l != "blocking cni" {
		t.Fatalf("helper: %q", l)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd); code != -1 {
		t.Fatalf("helper was not killed (exit %d)", code)
	}
	if ran := readRunLog(t, runLog); ran != "prepare cni" {
		t.Fatalf("killed run ran %q", ran)
	}
	// prepare finished with v1; cni was interrupted: its v0 checkpoint is gone, it has no v1 one.
	if !checkpoint("prepare") || checkpoint("install/cni") || !checkpoint("install/api") || !checkpoint("finish") {
		t.Fatalf("checkpoints after the kill: prepare=%v cni=%v api=%v finish=%v",
			checkpoint("prepare"), checkpoint("install/cni"), checkpoint("install/api"), checkpoint("finish"))
	}

	// 3. The re-run (same v1 inputs) skips prepare, redoes cni, and re-runs the phases whose
	//    checkpoints hold the old v0 digest.
	result, ran := completeRun(t, root, runLog, "v1")
	if ran != "cni api finish" {
		t.Fatalf("re-run ran %q", ran)
	}
	want := "result prepare=skipped-checkpoint install=ran install/cni=ran install/api=ran finish=ran"
	if result != want {
		t.Fatalf("re-run:\n got %s\nwant %s", result, want)
	}

	// 4. Nothing left to do.
	if _, ran := completeRun(t, root, runLog, "v1"); ran != "" {
		t.Fatalf("third run ran %q", ran)
	}
}

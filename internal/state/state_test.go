package state

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/internal/exitcode"
)

// The test binary doubles as a helper process (so lock and crash tests use real, separate
// processes): with DHCTL_STATE_HELPER set, TestMain runs the helper instead of the tests.
const helperEnv = "DHCTL_STATE_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode, os.Getenv("HELPER_ROOT"), os.Getenv("HELPER_CLUSTER")))
	}
	os.Exit(m.Run())
}

// helper modes:
//
//	hold    Open, print "acquired <pid>", wait for stdin EOF, Close, exit 0; on a lock conflict
//	        print "locked <holder pid>" and exit 3
//	writer  Open, then rewrite data/blob alternating two contents forever, printing "ready"
//	        after the first write (the test SIGKILLs it)
func helper(mode, root, cluster string) int {
	ctx := context.Background()
	d, err := Open(ctx, root, cluster)
	if err != nil {
		var le *LockedError
		if errors.As(err, &le) {
			fmt.Printf("locked %d\n", le.Holder.PID)
			return 3
		}
		fmt.Printf("error %v\n", err)
		return 1
	}
	switch mode {
	case "hold":
		fmt.Printf("acquired %d\n", os.Getpid())
		io.Copy(io.Discard, os.Stdin)
		if err := d.Close(); err != nil {
			fmt.Printf("error %v\n", err)
			return 1
		}
		return 0
	case "writer":
		for i := 0; ; i++ {
			if err := d.WriteFile("data/blob", blobContent(i%2)); err != nil {
				fmt.Printf("error %v\n", err)
				return 1
			}
			if i == 0 {
				fmt.Println("ready")
			}
		}
	}
	fmt.Printf("error unknown mode %q\n", mode)
	return 1
}

// blobContent returns one of two contents of different sizes, each recognisable as a whole.
func blobContent(which int) []byte {
	if which == 0 {
		return bytes.Repeat([]byte("A"), 256<<10)
	}
	return bytes.Repeat([]byte("B"), 300<<10+7)
}

type helperProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startHelper(t *testing.T, mode, root, cluster string) *helperProc {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "HELPER_ROOT="+root, "HELPER_CLUSTER="+cluster)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helperProc{cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
	}()
	t.Cleanup(func() {
		// Never leave a helper behind, even when the test failed half-way.
		if h.cmd.ProcessState == nil {
			h.cmd.Process.Kill()
			h.cmd.Wait()
		}
	})
	return h
}

// line waits (bounded) for the helper's next output line.
func (h *helperProc) line(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-h.lines:
		if !ok {
			t.Fatalf("helper pid %d exited without output", h.cmd.Process.Pid)
		}
		return l
	case <-time.After(20 * time.Second):
		t.Fatalf("helper pid %d printed nothing within 20s", h.cmd.Process.Pid)
	}
	return ""
}

// finish closes the helper's stdin and waits (bounded) for it to exit, returning its exit code.
func (h *helperProc) finish(t *testing.T) int {
	t.Helper()
	h.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- h.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("helper pid %d did not exit within 20s of closing its stdin", h.cmd.Process.Pid)
	}
	return h.cmd.ProcessState.ExitCode()
}

func TestOpenCreatesPrivateDirsAndRecordsHolder(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state", "root")
	d, err := Open(context.Background(), root, "prod-1")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Path() != filepath.Join(root, "prod-1") {
		t.Fatalf("Path() = %s", d.Path())
	}
	for _, p := range []string{root, d.Path()} {
		assertMode(t, p, fs.ModeDir|0o700)
	}
	assertMode(t, filepath.Join(d.Path(), LockFile), 0o600)
	data, err := os.ReadFile(filepath.Join(d.Path(), LockFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), fmt.Sprintf(`"pid":%d`, os.Getpid())) || !strings.Contains(string(data), `"host":`) || !strings.Contains(string(data), `"command":`) || !strings.Contains(string(data), `"started":`) {
		t.Fatalf("lock file does not record the holder: %s", data)
	}
}

func TestOpenFixesModeOfExistingClusterDir(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "c"), 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := Open(context.Background(), root, "c")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	assertMode(t, d.Path(), fs.ModeDir|0o700)
}

func TestOpenRejectsBadInput(t *testing.T) {
	root := t.TempDir()
	for _, name := range []string{"", ".", "..", "../x", "a/b", "/abs", ".hidden", "-flag", "a b", "ü", strings.Repeat("x", 129)} {
		_, err := Open(context.Background(), root, name)
		if err == nil || !strings.Contains(err.Error(), "cluster name") {
			t.Errorf("Open(%q): want a cluster name error, got %v", name, err)
		}
		if exitcode.ExitCode(err) != exitcode.UsageError {
			t.Errorf("Open(%q): a bad cluster name must be a usage error", name)
		}
	}
	if _, err := Open(context.Background(), "", "ok"); exitcode.ExitCode(err) != exitcode.UsageError {
		t.Errorf("empty root: want a usage error, got %v", err)
	}
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), root, "file"); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("cluster path is a file: got %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Open(ctx, root, "ok"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: got %v", err)
	}
	for _, ok := range []string{"a", "prod-1", "my_cluster.v2", "A1"} {
		if err := ValidateClusterName(ok); err != nil {
			t.Errorf("ValidateClusterName(%q): %v", ok, err)
		}
	}
}

func TestDefaultRoot(t *testing.T) {
	env := func(kv ...string) func(string) (string, bool) {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	if got, err := DefaultRoot(env("XDG_STATE_HOME", "/var/tmp/xdg")); err != nil || got != "/var/tmp/xdg/dhctl" {
		t.Fatalf("with XDG_STATE_HOME: %q, %v", got, err)
	}
	if got, err := DefaultRoot(env("XDG_STATE_HOME", "relative/ignored", "HOME", "/home/u")); err != nil || got != "/home/u/.local/state/dhctl" {
		t.Fatalf("relative XDG_STATE_HOME must be ignored: %q, %v", got, err)
	}
	if got, err := DefaultRoot(env("HOME", "/home/u")); err != nil || got != "/home/u/.local/state/dhctl" {
		t.Fatalf("without XDG_STATE_HOME: %q, %v", got, err)
	}
	// The process's own environment is not consulted: only what the command was given.
	t.Setenv("XDG_STATE_HOME", "/var/tmp/process-env")
	if _, err := DefaultRoot(env()); err == nil || !strings.Contains(err.Error(), "--state-dir") {
		t.Fatalf("no HOME in the given environment: %v", err)
	}
}

func TestWriteReadRemove(t *testing.T) {
	d, err := Open(context.Background(), t.TempDir(), "c")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.ReadFile("missing"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: want os.ErrNotExist, got %v", err)
	}
	if err := d.WriteFile("checkpoints/bootstrap/install/cni.json", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteFile("checkpoints/bootstrap/install/cni.json", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	got, err := d.ReadFile("checkpoints/bootstrap/install/cni.json")
	if err != nil || string(got) != "v2" {
		t.Fatalf("ReadFile = %q, %v", got, err)
	}
	for _, dir := range []string{"checkpoints", "checkpoints/bootstrap", "checkpoints/bootstrap/install"} {
		assertMode(t, filepath.Join(d.Path(), dir), fs.ModeDir|0o700)
	}
	assertMode(t, filepath.Join(d.Path(), "checkpoints/bootstrap/install/cni.json"), 0o600)
	assertNoTempFiles(t, d.Path())

	if err := d.Remove("checkpoints/bootstrap/install/cni.json"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadFile("checkpoints/bootstrap/install/cni.json"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after Remove: %v", err)
	}
	if err := d.Remove("checkpoints/bootstrap/install/cni.json"); err != nil {
		t.Fatalf("removing a missing file must succeed: %v", err)
	}
}

func TestWriteFileUnderUmaskAndOverExistingFile(t *testing.T) {
	d, err := Open(context.Background(), t.TempDir(), "c")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// A file created by someone else with a lax mode is replaced by a 0600 one.
	if err := os.WriteFile(filepath.Join(d.Path(), "kubeconfig"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	if err := d.WriteFile("kubeconfig", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteFile("a/b/c", []byte("x")); err != nil {
		t.Fatal(err)
	}
	assertMode(t, filepath.Join(d.Path(), "kubeconfig"), 0o600)
	assertMode(t, filepath.Join(d.Path(), "a/b"), fs.ModeDir|0o700)
	assertMode(t, filepath.Join(d.Path(), "a/b/c"), 0o600)
}

func TestRemoveAll(t *testing.T) {
	d, err := Open(context.Background(), t.TempDir(), "c")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, n := range []string{"checkpoints/a.json", "checkpoints/g/b.json", "keep"} {
		if err := d.WriteFile(n, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.RemoveAll("checkpoints"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d.Path(), "checkpoints")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("checkpoints still there: %v", err)
	}
	if _, err := d.ReadFile("keep"); err != nil {
		t.Fatalf("RemoveAll removed too much: %v", err)
	}
	if err := d.RemoveAll("checkpoints"); err != nil {
		t.Fatalf("removing a missing tree: %v", err)
	}
	for _, bad := range []string{".", "..", "", "lock"} {
		if err := d.RemoveAll(bad); err == nil {
			t.Errorf("RemoveAll(%q) accepted", bad)
		}
	}
}

func TestFileNamesAreChecked(t *testing.T) {
	d, err := Open(context.Background(), t.TempDir(), "c")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, name := range []string{"", ".", "..", "../escape", "a/../../escape", "/etc/passwd", "a//b", "a/./b", "lock", ".x.tmp-123", "dir/.y.tmp-1"} {
		if err := d.WriteFile(name, []byte("x")); err == nil {
			t.Errorf("WriteFile(%q) succeeded", name)
		} else if !strings.Contains(err.Error(), "invalid file name") {
			t.Errorf("WriteFile(%q): unclear error %v", name, err)
		}
		if _, err := d.ReadFile(name); err == nil {
			t.Errorf("ReadFile(%q) succeeded", name)
		}
		if err := d.Remove(name); err == nil {
			t.Errorf("Remove(%q) succeeded", name)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(d.Path()), "escape")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a write escaped the cluster directory")
	}
}

func TestUseAfterClose(t *testing.T) {
	d, err := Open(context.Background(), t.TempDir(), "c")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := d.WriteFile("x", nil); err == nil || !strings.Contains(err.Error(), "after Close") {
		t.Fatalf("WriteFile after Close: %v", err)
	}
}

func TestLogFile(t *testing.T) {
	d, err := Open(context.Background(), t.TempDir(), "c")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	p, err := d.LogFile("bootstrap", time.Date(2026, 11, 22, 18, 0, 1, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if p != filepath.Join(d.Path(), "logs", "20261122T180001Z-bootstrap.log") {
		t.Fatalf("LogFile = %s", p)
	}
	assertMode(t, filepath.Dir(p), fs.ModeDir|0o700)
	if p, _ := d.LogFile("../../x", time.Unix(0, 0)); filepath.Dir(p) != filepath.Join(d.Path(), "logs") {
		t.Fatalf("a bad command name escaped logs/: %s", p)
	}
}

func TestSecondOpenInSameProcessIsLocked(t *testing.T) {
	root := t.TempDir()
	d, err := Open(context.Background(), root, "c")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), root, "c")
	var le *LockedError
	if !errors.As(err, &le) || le.Holder.PID != os.Getpid() {
		t.Fatalf("want *LockedError held by us, got %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2, err := Open(context.Background(), root, "c")
	if err != nil {
		t.Fatalf("after Close the lock must be free: %v", err)
	}
	d2.Close()
	// Another cluster under the same root is independent.
	d3, err := Open(context.Background(), root, "other")
	if err != nil {
		t.Fatal(err)
	}
	d3.Close()
}

func TestLockHeldByAnotherProcess(t *testing.T) {
	root := t.TempDir()
	h := startHelper(t, "hold", root, "c")
	if l := h.line(t); l != fmt.Sprintf("acquired %d", h.cmd.Process.Pid) {
		t.Fatalf("helper: %q", l)
	}
	_, err := Open(context.Background(), root, "c")
	var le *LockedError
	if !errors.As(err, &le) {
		t.Fatalf("want *LockedError, got %v", err)
	}
	host, _ := os.Hostname()
	if le.Holder.PID != h.cmd.Process.Pid || le.Holder.Host != host || !strings.Contains(le.Holder.Command, os.Args[0]) || le.Holder.Started.IsZero() {
		t.Fatalf("holder not recorded: %+v", le.Holder)
	}
	msg := err.Error()
	for _, want := range []string{fmt.Sprintf("pid %d", h.cmd.Process.Pid), host, "locked", "wait for it to finish"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if le.Path != filepath.Join(root, "c", LockFile) {
		t.Errorf("Path = %s", le.Path)
	}
	if code := h.finish(t); code != 0 {
		t.Fatalf("helper exit code %d", code)
	}
	d, err := Open(context.Background(), root, "c")
	if err != nil {
		t.Fatalf("lock not released after the holder closed it: %v", err)
	}
	d.Close()
}

func TestLockReleasedWhenHolderIsKilled(t *testing.T) {
	root := t.TempDir()
	h := startHelper(t, "hold", root, "c")
	h.line(t)
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.cmd.Wait()
	d, err := Open(context.Background(), root, "c")
	if err != nil {
		t.Fatalf("a killed holder must not leave a stale lock: %v", err)
	}
	d.Close()
}

func TestConcurrentOpenFromTwoProcesses(t *testing.T) {
	for round := range 5 {
		root := t.TempDir()
		hs := []*helperProc{startHelper(t, "hold", root, "c"), startHelper(t, "hold", root, "c")}
		var wg sync.WaitGroup
		results := make([]string, len(hs))
		for i, h := range hs {
			wg.Add(1)
			go func() { defer wg.Done(); results[i] = h.line(t) }()
		}
		wg.Wait()
		var winner, loser int = -1, -1
		for i, r := range results {
			switch {
			case strings.HasPrefix(r, "acquired "):
				winner = i
			case strings.HasPrefix(r, "locked "):
				loser = i
			}
		}
		if winner < 0 || loser < 0 {
			t.Fatalf("round %d: want exactly one winner and one loser, got %q", round, results)
		}
		if results[loser] != fmt.Sprintf("locked %d", hs[winner].cmd.Process.Pid) {
			t.Fatalf("round %d: loser names holder %q, winner is pid %d", round, results[loser], hs[winner].cmd.Process.Pid)
		}
		if code := hs[loser].finish(t); code != 3 {
			t.Fatalf("round %d: loser exit code %d", round, code)
		}
		if code := hs[winner].finish(t); code != 0 {
			t.Fatalf("round %d: winner exit code %d", round, code)
		}
	}
}

// TestAtomicWriteSurvivesKill kills a process rewriting a file at random moments: the file must
// always hold one complete version, and the next Open must clean up the writer's temp files.
func TestAtomicWriteSurvivesKill(t *testing.T) {
	root := t.TempDir()
	a, b := blobContent(0), blobContent(1)
	interrupted := 0 // kills that hit a write in progress (a temp file existed)
	defer func() { t.Logf("%d of 15 kills interrupted a write in progress", interrupted) }()
	for i := range 15 {
		h := startHelper(t, "writer", root, "c")
		if l := h.line(t); l != "ready" {
			t.Fatalf("writer: %q", l)
		}
		time.Sleep(time.Duration(i%5) * 3 * time.Millisecond)
		if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		h.cmd.Wait()
		got, err := os.ReadFile(filepath.Join(root, "c", "data", "blob"))
		if err != nil {
			t.Fatalf("kill %d: %v", i, err)
		}
		if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
			t.Fatalf("kill %d: file holds a torn write (%d bytes)", i, len(got))
		}
		assertMode(t, filepath.Join(root, "c", "data", "blob"), 0o600)
		if leftovers, _ := filepath.Glob(filepath.Join(root, "c", "data", ".blob"+tempMarker+"*")); len(leftovers) > 0 {
			interrupted++
		}
		d, err := Open(context.Background(), root, "c")
		if err != nil {
			t.Fatalf("kill %d: reopen: %v", i, err)
		}
		assertNoTempFiles(t, d.Path())
		d.Close()
	}
}

func TestRedactedCommandLine(t *testing.T) {
	got := redactedCommandLine([]string{"dhctl", "bootstrap", "--sudo-password", "hunter2", "--ssh-passphrase=pp", "--ssh-user", "ubuntu", "--token=abcdef.0123456789abcdef"})
	want := "dhctl bootstrap --sudo-password [REDACTED] --ssh-passphrase=[REDACTED] --ssh-user ubuntu --token=[REDACTED]"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

func assertMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (fs.ModeDir | fs.ModePerm); got != want {
		t.Fatalf("%s: mode %v, want %v", path, got, want)
	}
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && strings.Contains(e.Name(), tempMarker) {
			t.Errorf("temp file left behind: %s", p)
		}
		return nil
	})
}

func BenchmarkWriteFile4KiB(b *testing.B) {
	d, err := Open(context.Background(), b.TempDir(), "c")
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	data := bytes.Repeat([]byte("x"), 4096)
	for b.Loop() {
		if err := d.WriteFile("checkpoints/p.json", data); err != nil {
			b.Fatal(err)
		}
	}
}

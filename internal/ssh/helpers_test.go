package ssh_test

import (
	"bytes"
	"context"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dssh "github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/internal/ssh/sshtest"
)

// logBuffer collects log output so tests can assert on it (e.g. that no secret leaked).
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// rootConfig is a config for root on h with the lab's root key, pinning into a fresh state dir.
func rootConfig(t *testing.T, lab *sshtest.Lab, h *sshtest.Host, logs *logBuffer) dssh.Config {
	t.Helper()
	var logger *slog.Logger
	if logs != nil {
		logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return dssh.Config{
		Host:           h.Addr,
		Port:           h.Port,
		User:           "root",
		Auth:           dssh.Auth{Keys: []dssh.KeyFile{{Path: lab.RootKey}}},
		HostKeys:       dssh.HostKeyPolicy{StateDir: filepath.Join(t.TempDir(), "state")},
		Logger:         logger,
		ConnectTimeout: 5 * time.Second,
		DialContext:    lab.DialContext,
	}
}

func newClient(t *testing.T, cfg dssh.Config) *dssh.Client {
	t.Helper()
	c, err := dssh.New(cfg)
	if err != nil {
		t.Fatalf("ssh.New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func output(t *testing.T, c *dssh.Client, cmd dssh.Command) string {
	t.Helper()
	out, err := c.Output(ctxT(t, 30*time.Second), cmd)
	if err != nil {
		t.Fatalf("%s: %v", cmd.Cmd, err)
	}
	return out
}

// sshKeygen makes a key with the real OpenSSH tool (formats and encryption as users have them).
func sshKeygen(t *testing.T, path string, args ...string) {
	t.Helper()
	out, err := exec.Command("ssh-keygen", append([]string{"-q", "-f", path}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

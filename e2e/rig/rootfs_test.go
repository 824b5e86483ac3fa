package rig

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/internal/testctx"
)

func TestEnsureRootfs(t *testing.T) {
	ctx, cancel := testctx.New(t, 25*time.Minute)
	defer cancel()
	if err := EnsureHost(ctx); err != nil {
		t.Fatal(err)
	}
	dir, err := EnsureRootfs(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"usr/sbin/sshd", "lib/systemd/systemd", "usr/sbin/iptables", "usr/local/sbin/rig-node-setup"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("machine image lacks %s: %v", p, err)
		}
	}
	if keys, _ := filepath.Glob(filepath.Join(dir, "etc/ssh/ssh_host_*")); len(keys) != 0 {
		t.Errorf("machine image carries shared host keys %v", keys)
	}
	// A second call is served from the cache.
	start := time.Now()
	if again, err := EnsureRootfs(ctx, ""); err != nil || again != dir {
		t.Fatalf("second EnsureRootfs = %q, %v; want %q", again, err, dir)
	}
	t.Logf("cached rootfs %s, warm lookup %v", dir, time.Since(start))
}

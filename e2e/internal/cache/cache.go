// Package cache locates the e2e rig's cache outside the checkout and serialises
// concurrent builds of one cached thing.
package cache

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Dir is where the rig keeps what it builds once and reuses across runs
// and checkouts: ${XDG_CACHE_HOME:-$HOME/.cache}/dhctl-dev.
func Dir() (string, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("cache: cache directory: neither XDG_CACHE_HOME nor HOME is set: %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "dhctl-dev"), nil
}

// WithLock runs fn while holding an exclusive flock on path, so concurrent
// test processes building the same cached thing do it once. The wait is bounded
// by ctx.
func WithLock(ctx context.Context, path string, fn func() error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("cache: lock %s: %w", path, err)
	}
	defer f.Close()
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if err != unix.EWOULDBLOCK {
			return fmt.Errorf("cache: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cache: waiting for lock %s (another run builds the same thing): %w", path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return fn()
}

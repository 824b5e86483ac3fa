package rig

import "github.com/dhctl-dev/dhctl/e2e/internal/cache"

// CacheDir is where the rig keeps what it builds once and reuses across runs
// and checkouts: ${XDG_CACHE_HOME:-$HOME/.cache}/dhctl-dev.
func CacheDir() (string, error) { return cache.Dir() }

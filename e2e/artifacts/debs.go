package artifacts

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/internal/cache"
)

// Deb is a Debian 12 package pinned to an exact version.
type Deb struct{ Name, Version string }

// Versions of the Debian 12 node packages shipped to machines through the registry.
const (
	ContainerdVersion = "1.6.20~ds1-1+deb12u3"
	RuncVersion       = "1.1.5+ds1-1+deb12u1"
)

// userlandDebs are unpacked into the image layer kube-proxy and flannel need
// for iptables and conntrack (with the C library they link against).
var userlandDebs = []Deb{
	{"iptables", "1.8.9-2"},
	{"libip4tc2", "1.8.9-2"},
	{"libip6tc2", "1.8.9-2"},
	{"libxtables12", "1.8.9-2"},
	{"libmnl0", "1.0.4-3"},
	{"libnetfilter-conntrack3", "1.0.9-3"},
	{"libnfnetlink0", "1.0.2-2"},
	{"libnftnl11", "1.2.4-2"},
	{"conntrack", "1:1.4.7-1+b2"},
	{"libc6", "2.36-9+deb12u14"},
	{"libgcc-s1", "12.2.0-14+deb12u1"},
	{"netbase", "6.4"},
}

// busyboxDeb gives the flannel image the sh and cp its init steps call.
var busyboxDeb = Deb{"busybox-static", "1:1.35.0-4+deb12u1+b1"}

// FetchDebs downloads the given packages with apt-get download into the cache
// (once per version) and returns their .deb paths by package name.
func FetchDebs(ctx context.Context, opts Options, debs ...Deb) (map[string]string, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, d := range debs {
		p, err := fetchDeb(ctx, opts, d)
		if err != nil {
			return nil, err
		}
		out[d.Name] = p
	}
	return out, nil
}

func fetchDeb(ctx context.Context, opts Options, d Deb) (string, error) {
	dir := filepath.Join(opts.CacheDir, "debs-bookworm", d.Name+"_"+strings.ReplaceAll(d.Version, ":", "%3a"))
	find := func() string {
		m, _ := filepath.Glob(filepath.Join(dir, d.Name+"_*.deb"))
		if len(m) == 1 {
			return m[0]
		}
		return ""
	}
	if p := find(); p != "" {
		return p, nil
	}
	err := cache.WithLock(ctx, dir+".lock", func() error {
		if find() != "" {
			return nil
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		tmp := dir + ".tmp"
		os.RemoveAll(tmp)
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return err
		}
		download := func() ([]byte, error) {
			cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", d.Name+"="+d.Version)
			cmd.Dir = tmp
			return cmd.CombinedOutput()
		}
		if _, err := download(); err != nil {
			// The package lists may be missing or stale.
			if out, err := exec.CommandContext(ctx, "apt-get", "update", "-q").CombinedOutput(); err != nil {
				return fmt.Errorf("artifacts: apt-get update (to download %s=%s): %w\n%s", d.Name, d.Version, err, lastLines(string(out), 10))
			}
			if out, err := download(); err != nil {
				policy, _ := exec.CommandContext(ctx, "apt-cache", "policy", d.Name).CombinedOutput()
				return fmt.Errorf("artifacts: apt-get download %s=%s: %w\n%s\nversions apt offers:\n%s\nupdate the pinned version in e2e/artifacts/debs.go", d.Name, d.Version, err, lastLines(string(out), 5), policy)
			}
		}
		os.RemoveAll(dir)
		return os.Rename(tmp, dir)
	})
	if err != nil {
		return "", err
	}
	if p := find(); p != "" {
		return p, nil
	}
	return "", fmt.Errorf("artifacts: apt-get download %s=%s left no %s_*.deb in %s", d.Name, d.Version, d.Name, dir)
}

// unpackDebs extracts packages (dpkg-deb -x, no maintainer scripts) into a
// cached directory named key and returns it.
func unpackDebs(ctx context.Context, opts Options, key string, debs map[string]string) (string, error) {
	dir := filepath.Join(opts.CacheDir, "rootfs-layers", key)
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir, nil
	}
	err := cache.WithLock(ctx, dir+".lock", func() error {
		if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
			return nil
		}
		tmp := dir + ".tmp"
		os.RemoveAll(tmp)
		root := filepath.Join(tmp, "root")
		if err := os.MkdirAll(root, 0o755); err != nil {
			return err
		}
		for _, name := range sortedKeys(debs) {
			if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[name], root).CombinedOutput(); err != nil {
				return fmt.Errorf("artifacts: unpacking %s: %w\n%s", debs[name], err, out)
			}
		}
		// Documentation is dead weight in an image.
		for _, d := range []string{"usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian", "usr/share/locale"} {
			os.RemoveAll(filepath.Join(root, d))
		}
		if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
			return err
		}
		os.RemoveAll(dir)
		return os.Rename(tmp, dir)
	})
	if err != nil {
		return "", err
	}
	return dir, nil
}

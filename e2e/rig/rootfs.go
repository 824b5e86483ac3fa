package rig

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/dhctl-dev/dhctl/e2e/internal/cache"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultMirror is the Debian mirror debootstrap fetches from.
const DefaultMirror = "http://deb.debian.org/debian"

// rootfsSuite is the Debian release every machine runs.
const rootfsSuite = "bookworm"

// rootfsPackages are installed into the machine image on top of minbase:
// systemd and sshd to boot and be reached, and the userspace tools a kubeadm
// node needs (iptables, conntrack, ethtool, socat, ebtables) that dhctl does
// not ship itself.
var rootfsPackages = []string{
	"systemd-sysv", "udev", "dbus", "openssh-server", "iproute2", "ca-certificates",
	"sudo", "kmod", "iptables", "conntrack", "ethtool", "socat", "ebtables", "netbase",
	"procps", "libseccomp2",
}

// rootfsLayoutVersion changes whenever configureRootfs changes, so that the
// cache key changes with it.
const rootfsLayoutVersion = "3"

// rootfsFiles are written into the cached image once. Paths are relative to
// the root.
var rootfsFiles = map[string]string{
	// systemd-networkd configures host0 from a per-machine file; nothing waits
	// for "online", there is no uplink.
	"etc/systemd/system.conf.d/10-rig.conf": "[Manager]\nDefaultTimeoutStopSec=10s\nDefaultTimeoutStartSec=60s\n",
	// The host has a hybrid cgroup v1 layout; nspawn mounts the controllers
	// read-only and runc then fails to create cgroups. Remount them writable
	// before anything runs containers. kubelet also insists on writing a few
	// sysctls that are read-only inside a container: bind files with the values
	// it wants over them. kubelet and containerd read /dev/kmsg.
	"usr/local/sbin/rig-node-setup": `#!/bin/sh
set -eu
mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
for d in /sys/fs/cgroup/*; do
	mountpoint -q "$d" && mount -o remount,bind,rw "$d" "$d" 2>/dev/null || true
done
mkdir -p /run/rig-sysctl
for kv in vm/overcommit_memory=1 kernel/panic=10 kernel/panic_on_oops=1; do
	key=${kv%%=*}; val=${kv#*=}; f=/run/rig-sysctl/$(echo "$key" | tr / _)
	echo "$val" > "$f"
	mount --bind "$f" "/proc/sys/$key" || true
done
[ -e /dev/kmsg ] || ln -s /dev/console /dev/kmsg
`,
	"etc/systemd/system/rig-node-setup.service": `[Unit]
Description=Make this nspawn machine able to run containers (dhctl e2e rig)
DefaultDependencies=no
After=local-fs.target
Before=containerd.service kubelet.service sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/rig-node-setup

[Install]
WantedBy=sysinit.target
`,
	"etc/ssh/sshd_config.d/10-rig.conf": "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n",
}

// rootfsKey identifies one configuration of the cached image.
func rootfsKey(mirror string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n", rootfsSuite, mirror, strings.Join(rootfsPackages, ","), rootfsLayoutVersion)
	for _, p := range sortedKeys(rootfsFiles) {
		fmt.Fprintf(h, "%s\n%s\n", p, rootfsFiles[p])
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// EnsureRootfs returns the path of the cached, configured Debian 12 root file
// system, building it with debootstrap on first use (a few minutes). The image
// is read-only to machines: each one mounts an overlay over it.
func EnsureRootfs(ctx context.Context, mirror string) (string, error) {
	if mirror == "" {
		mirror = DefaultMirror
	}
	cacheDir, err := cache.Dir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cacheDir, "rootfs-"+rootfsSuite+"-"+rootfsKey(mirror))
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir, nil
	}
	err = cache.WithLock(ctx, dir+".lock", func() error {
		if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
			return nil
		}
		return buildRootfs(ctx, mirror, dir)
	})
	if err != nil {
		return "", err
	}
	return dir, nil
}

func buildRootfs(ctx context.Context, mirror, dir string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("rig: removing stale %s: %w", tmp, err)
	}
	args := []string{"--variant=minbase", "--include=" + strings.Join(rootfsPackages, ","), rootfsSuite, tmp, mirror}
	if err := run(ctx, nil, "debootstrap", args...); err != nil {
		return fmt.Errorf("rig: building the machine image with debootstrap from %s (check that apt can reach it): %w", mirror, err)
	}
	if err := configureRootfs(ctx, tmp); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

func configureRootfs(ctx context.Context, root string) error {
	for _, p := range sortedKeys(rootfsFiles) {
		mode := os.FileMode(0o644)
		if strings.Contains(p, "/sbin/") {
			mode = 0o755
		}
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(rootfsFiles[p]), mode); err != nil {
			return fmt.Errorf("rig: configuring machine image: %w", err)
		}
	}
	// Host keys are made per machine; a shared one would make every machine
	// the same host to SSH. machine-id is written per machine too.
	keys, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*"))
	for _, k := range keys {
		if err := os.Remove(k); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/machine-id"), nil, 0o444); err != nil {
		return err
	}
	// Apt caches and lists are useless offline and make every overlay bigger.
	for _, d := range []string{"var/cache/apt/archives", "var/lib/apt/lists"} {
		entries, _ := filepath.Glob(filepath.Join(root, d, "*.deb"))
		for _, e := range entries {
			os.Remove(e)
		}
	}
	chroot := func(args ...string) error {
		return run(ctx, nil, "chroot", append([]string{root}, args...)...)
	}
	if err := chroot("systemctl", "enable", "systemd-networkd.service", "rig-node-setup.service", "ssh.service"); err != nil {
		return fmt.Errorf("rig: configuring machine image: %w", err)
	}
	// Nothing is "online" here (no uplink), a getty on the console only
	// competes with the log, and resolved is not installed.
	if err := chroot("systemctl", "mask", "systemd-networkd-wait-online.service", "console-getty.service", "getty@tty1.service", "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_reap.service"); err != nil {
		return fmt.Errorf("rig: configuring machine image: %w", err)
	}
	return nil
}

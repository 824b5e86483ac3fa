package rig

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// hostTools maps the programs the rig runs on the host to the Debian package
// that ships each of them.
var hostTools = []struct{ program, pkg string }{
	{"debootstrap", "debootstrap"},
	{"systemd-nspawn", "systemd-container"},
	{"ip", "iproute2"},
	{"nsenter", "util-linux"},
	{"mount", "mount"},
	{"docker-registry", "docker-registry"},
	{"dpkg-deb", "dpkg"},
	{"apt-get", "apt"},
	{"nft", "nftables"},
}

// hostLimits are kernel limits the rig raises (never lowers) on the host. Every machine's
// systemd, kubelet, containerd and control plane take inotify instances from one budget, that
// of root on the host (the machines share its user): 128 by default, which 6 machines of an HA
// cluster beside another test's 2 exhaust, and then a kubelet dies with "error creating fsnotify
// watcher: too many open files".
var hostLimits = []struct {
	path string
	min  int
}{
	{"/proc/sys/fs/inotify/max_user_instances", 8192},
	{"/proc/sys/fs/inotify/max_user_watches", 524288},
}

// raiseLimits raises the host limits the rig needs.
func raiseLimits() error {
	for _, l := range hostLimits {
		data, err := os.ReadFile(l.path)
		if err != nil {
			return fmt.Errorf("rig: reading %s: %w", l.path, err)
		}
		var cur int
		if _, err := fmt.Sscan(strings.TrimSpace(string(data)), &cur); err != nil {
			return fmt.Errorf("rig: %s: %q is not a number", l.path, data)
		}
		if cur >= l.min {
			continue
		}
		if err := os.WriteFile(l.path, []byte(fmt.Sprint(l.min)), 0o644); err != nil {
			return fmt.Errorf("rig: raising %s from %d to %d (the machines' kubelets need it): %w", l.path, cur, l.min, err)
		}
	}
	return nil
}

// EnsureHost checks that the rig can run here (root, the programs it needs)
// and installs the Debian packages of missing programs with apt-get.
func EnsureHost(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("rig: needs root (network namespaces, mounts, systemd-nspawn); run the tests as root")
	}
	if err := raiseLimits(); err != nil {
		return err
	}
	var missing []string
	for _, t := range hostTools {
		if _, err := exec.LookPath(t.program); err != nil {
			missing = append(missing, t.pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return aptInstall(ctx, missing...)
}

// aptInstall installs Debian packages, refreshing the package lists once if
// the first attempt cannot find them.
func aptInstall(ctx context.Context, pkgs ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	install := func() error {
		args := append([]string{"install", "-y", "-q", "--no-install-recommends"}, pkgs...)
		return run(ctx, []string{"DEBIAN_FRONTEND=noninteractive"}, "apt-get", args...)
	}
	if err := install(); err == nil {
		return nil
	}
	if err := run(ctx, nil, "apt-get", "update", "-q"); err != nil {
		return fmt.Errorf("rig: apt-get update (to install %s): %w", strings.Join(pkgs, " "), err)
	}
	if err := install(); err != nil {
		return fmt.Errorf("rig: installing Debian packages %s: %w", strings.Join(pkgs, " "), err)
	}
	return nil
}

// run runs a program and returns an error carrying the tail of its output.
func run(ctx context.Context, env []string, name string, args ...string) error {
	_, err := output(ctx, env, name, args...)
	return err
}

// output runs a program and returns its standard output; on failure the error
// names the command and carries the last lines of its combined output.
func output(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, tail(stderr.String()+stdout.String(), 15))
	}
	return stdout.String(), nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

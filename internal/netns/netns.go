// Package netns creates and uses named Linux network namespaces (the `ip netns` kind, bound under
// /run/netns) for tests that need isolated networks: run code, dial and listen inside one.
package netns

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Dir is where `ip netns` binds named namespaces.
const Dir = "/run/netns"

// Add creates the named namespace and brings its loopback up.
func Add(ctx context.Context, name string) error {
	if err := IP(ctx, "netns", "add", name); err != nil {
		return err
	}
	return IP(ctx, "-n", name, "link", "set", "lo", "up")
}

// Delete removes the named namespace (its veth ends go with it). A missing one is not an error.
func Delete(ctx context.Context, name string) error {
	if _, err := os.Stat(filepath.Join(Dir, name)); os.IsNotExist(err) {
		return nil
	}
	return IP(ctx, "netns", "delete", name)
}

// List returns the names of the existing named namespaces.
func List() ([]string, error) {
	entries, err := os.ReadDir(Dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// IP runs the ip(8) command, bounded by ctx and 30 s, returning its output in the error.
func IP(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Do runs fn on an OS thread switched into the named namespace. Sockets created by fn stay in
// that namespace after Do returns. The thread is discarded if it cannot be switched back.
func Do(name string, fn func() error) error {
	type result struct{ err error }
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		restored := false
		defer func() {
			if restored {
				runtime.UnlockOSThread()
			} // else: exiting a locked goroutine terminates its thread, which is what we want
		}()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- result{fmt.Errorf("netns %s: open current namespace: %w", name, err)}
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join(Dir, name))
		if err != nil {
			restored = true
			ch <- result{fmt.Errorf("netns %s: %w", name, err)}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			restored = true
			ch <- result{fmt.Errorf("netns %s: setns: %w", name, err)}
			return
		}
		ferr := fn()
		restored = unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil
		ch <- result{ferr}
	}()
	return (<-ch).err
}

// Dialer returns a DialContext function that connects from inside the named namespace. Name
// lookups are also made from inside it (through the Go resolver), so they never leave it.
func Dialer(name string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	inside := func(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error) {
		var conn net.Conn
		err := Do(name, func() error {
			var err error
			conn, err = d.DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		// Tests name their hosts by address: a name would be resolved through the machine's
		// resolver configuration, a query that must never leave a test.
		if net.ParseIP(host) == nil {
			return nil, fmt.Errorf("netns %s: dial %s: give an IP address, not a name (tests never resolve names through the machine's resolver)", name, addr)
		}
		return inside(ctx, &net.Dialer{}, network, addr)
	}
}

// Listen opens a TCP listener inside the named namespace.
func Listen(name, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := Do(name, func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// Pids lists the processes whose network namespace is the named one (`ip netns pids`).
func Pids(ctx context.Context, name string) ([]int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", name).Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns pids %s: %w", name, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

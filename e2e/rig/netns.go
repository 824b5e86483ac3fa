package rig

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` keeps named network namespaces.
const netnsDir = "/run/netns"

// bridgeName is the bridge inside a rig's namespace that every machine and
// the registry attach to.
const bridgeName = "br0"

// createNetns creates the named namespace with loopback up and a bridge
// holding bridgeCIDR. The namespace has no route out: machines can reach each
// other, the registry and nothing else.
func createNetns(ctx context.Context, name, bridgeCIDR string) error {
	if err := run(ctx, nil, "ip", "netns", "add", name); err != nil {
		return fmt.Errorf("rig: creating network namespace %s: %w", name, err)
	}
	steps := [][]string{
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "link", "add", bridgeName, "type", "bridge"},
		{"-n", name, "addr", "add", bridgeCIDR, "dev", bridgeName},
		{"-n", name, "link", "set", bridgeName, "up"},
	}
	for _, s := range steps {
		if err := run(ctx, nil, "ip", s...); err != nil {
			return fmt.Errorf("rig: configuring network namespace %s: %w", name, err)
		}
	}
	return nil
}

// deleteNetns removes the named namespace if it exists.
func deleteNetns(ctx context.Context, name string) error {
	if _, err := os.Stat(filepath.Join(netnsDir, name)); os.IsNotExist(err) {
		return nil
	}
	if err := run(ctx, nil, "ip", "netns", "delete", name); err != nil {
		return fmt.Errorf("rig: deleting network namespace %s: %w", name, err)
	}
	return nil
}

// inNetns runs fn on an OS thread switched into the named namespace. Sockets
// created by fn stay in that namespace after the thread switches back, which is
// how the test process talks to machines without any route from the host.
func inNetns(name string, fn func() error) error {
	target, err := os.Open(filepath.Join(netnsDir, name))
	if err != nil {
		return fmt.Errorf("rig: opening network namespace %s: %w", name, err)
	}
	defer target.Close()

	runtime.LockOSThread()
	own, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("rig: opening own network namespace: %w", err)
	}
	defer own.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("rig: entering network namespace %s: %w", name, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime ends a locked thread when
		// its goroutine exits, so no other goroutine runs in the wrong
		// namespace.
		return fmt.Errorf("rig: returning from network namespace %s: %w", name, err)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// dialInNetns connects to address from inside the named namespace.
func dialInNetns(ctx context.Context, ns, network, address string) (net.Conn, error) {
	var conn net.Conn
	err := inNetns(ns, func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, address)
		return err
	})
	return conn, err
}

// listenInNetns listens on address inside the named namespace.
func listenInNetns(ns, network, address string) (net.Listener, error) {
	var l net.Listener
	err := inNetns(ns, func() error {
		var err error
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}

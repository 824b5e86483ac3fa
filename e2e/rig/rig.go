package rig

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// Network of every rig. Each rig has its own network namespace, so rigs
// running at the same time do not collide although they use the same
// addresses, and none of these addresses exists outside them.
var (
	rigPrefix      = netip.MustParsePrefix("10.77.1.0/24")
	rigBridge      = netip.MustParseAddr("10.77.1.254")
	firstMachineIP = netip.MustParseAddr("10.77.1.11")
)

const (
	maxMachines     = 200
	machineBootWait = 90 * time.Second
	stopGrace       = 10 * time.Second
)

// Options configure a rig. The zero value works.
type Options struct {
	// StateDir holds the rig's working files; DefaultStateDir if empty.
	StateDir string
	// Mirror is the Debian mirror for the machine image; DefaultMirror if empty.
	Mirror string
	// Logf, if set, receives progress messages (e.g. testing.T.Logf).
	Logf func(format string, args ...any)
}

// Rig is a set of machines in one network namespace. Create it with New and
// always Close it.
type Rig struct {
	id     string
	dir    string
	netns  string
	prefix netip.Prefix
	bridge netip.Addr
	rootfs string
	keyPEM []byte
	signer ssh.Signer
	logf   func(format string, args ...any)

	mu       sync.Mutex
	machines []*Machine
	next     int
	closers  []func() error // run in reverse order by Close, before teardown
	closed   bool

	closeOnce sync.Once
	closeErr  error
	signals   chan os.Signal
	quit      chan struct{}
}

// New prepares a rig: checks and installs host tools, sweeps leftovers of
// killed runs, builds or reuses the cached machine image, generates the SSH key
// and creates the network namespace with its bridge. It starts no machine.
func New(ctx context.Context, opts Options) (_ *Rig, err error) {
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDir
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := EnsureHost(ctx); err != nil {
		return nil, err
	}
	if err := Sweep(ctx, opts.StateDir); err != nil {
		logf("rig: sweep of earlier runs: %v", err)
	}
	start := time.Now()
	rootfs, err := EnsureRootfs(ctx, opts.Mirror)
	if err != nil {
		return nil, err
	}
	logf("rig: machine image %s ready in %v", rootfs, time.Since(start).Round(time.Millisecond))

	idBytes := make([]byte, 4)
	rand.Read(idBytes)
	id := hex.EncodeToString(idBytes)
	r := &Rig{
		id:      id,
		dir:     filepath.Join(opts.StateDir, id),
		netns:   netnsPrefix + id,
		prefix:  rigPrefix,
		bridge:  rigBridge,
		rootfs:  rootfs,
		logf:    logf,
		signals: make(chan os.Signal, 1),
		quit:    make(chan struct{}),
	}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, fmt.Errorf("rig: creating state directory: %w", err)
	}
	if err := writeOwner(r.dir); err != nil {
		os.RemoveAll(r.dir)
		return nil, err
	}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	r.watchSignals()

	r.keyPEM, r.signer, err = newEd25519("dhctl-rig-" + id)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(r.dir, "ssh"), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(r.SSHKeyFile(), r.keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("rig: writing SSH key: %w", err)
	}
	bridgeCIDR := netip.PrefixFrom(r.bridge, r.prefix.Bits()).String()
	if err := createNetns(ctx, r.netns, bridgeCIDR); err != nil {
		return nil, err
	}
	return r, nil
}

// watchSignals closes the rig when the process is interrupted, then lets the
// signal do what it would have done.
func (r *Rig) watchSignals() {
	signal.Notify(r.signals, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		select {
		case sig := <-r.signals:
			r.logf("rig: %v: cleaning up", sig)
			r.Close()
			signal.Reset(sig)
			if s, ok := sig.(syscall.Signal); ok {
				syscall.Kill(os.Getpid(), s)
			}
		case <-r.quit:
		}
	}()
}

// ID names this rig; its namespace is dhctl-rig-<ID>.
func (r *Rig) ID() string { return r.id }

// Dir is the rig's state directory.
func (r *Rig) Dir() string { return r.dir }

// NetNS is the path of the rig's network namespace, for `nsenter --net=PATH`.
func (r *Rig) NetNS() string { return filepath.Join(netnsDir, r.netns) }

// BridgeAddress is the host side's address on the machines' network (the
// registry listens there).
func (r *Rig) BridgeAddress() netip.Addr { return r.bridge }

// Prefix is the machines' network.
func (r *Rig) Prefix() netip.Prefix { return r.prefix }

// SSHKeyFile is the path of the private key (0600) every machine accepts for root.
func (r *Rig) SSHKeyFile() string { return filepath.Join(r.dir, "ssh", "id_ed25519") }

// SSHKey returns the private key every machine accepts for root, in OpenSSH format.
func (r *Rig) SSHKey() []byte { return append([]byte(nil), r.keyPEM...) }

// SSHSigner returns the same key as a signer for golang.org/x/crypto/ssh.
func (r *Rig) SSHSigner() ssh.Signer { return r.signer }

// DialContext connects from inside the rig's namespace, the only place the
// machines' addresses exist. Use it as a dialer for SSH or HTTP clients.
func (r *Rig) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return dialInNetns(ctx, r.netns, network, address)
}

// Listen listens inside the rig's namespace, e.g. on BridgeAddress.
func (r *Rig) Listen(network, address string) (net.Listener, error) {
	return listenInNetns(r.netns, network, address)
}

// InNetNS runs fn on an OS thread switched into the rig's namespace, for code that opens its
// own sockets (a server that listens where the machines can reach it). Sockets fn creates stay
// in the namespace; goroutines fn starts do not run in it.
func (r *Rig) InNetNS(fn func() error) error {
	return inNetns(r.netns, fn)
}

// Machines returns the machines started so far (stopped ones included).
func (r *Rig) Machines() []*Machine {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Machine(nil), r.machines...)
}

// Machine returns the machine with the given name, or nil.
func (r *Rig) Machine(name string) *Machine {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.machines {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// StartMachines boots n more machines in parallel (named node-1, node-2, ...)
// and returns when each answers SSH. On error the machines that did start
// stay registered and are removed by Close.
func (r *Rig) StartMachines(ctx context.Context, n int) ([]*Machine, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, errors.New("rig: StartMachines after Close")
	}
	if r.next+n > maxMachines {
		r.mu.Unlock()
		return nil, fmt.Errorf("rig: %d machines requested, at most %d fit one rig", r.next+n, maxMachines)
	}
	ms := make([]*Machine, n)
	for i := range ms {
		addr := firstMachineIP
		for j := 0; j < r.next; j++ {
			addr = addr.Next()
		}
		r.next++
		name := fmt.Sprintf("node-%d", r.next)
		ms[i] = &Machine{
			Name:          name,
			Address:       addr,
			rig:           r,
			dir:           filepath.Join(r.dir, "machines", name),
			ContainerdDir: filepath.Join(r.dir, "machines", name, "containerd"),
			done:          make(chan struct{}),
		}
		r.machines = append(r.machines, ms[i])
	}
	r.mu.Unlock()

	start := time.Now()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.startMachine(ctx, m)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return ms, err
	}
	r.logf("rig: %d machine(s) answer SSH after %v", n, time.Since(start).Round(time.Millisecond))
	return ms, nil
}

func (r *Rig) startMachine(ctx context.Context, m *Machine) error {
	cgroups, err := makeCgroups(filepath.Join(netnsPrefix+r.id, m.Name))
	if err != nil {
		m.markExited()
	}
	for _, c := range cgroups {
		// Recorded before anything runs in them, so a sweep finds them.
		appendLine(filepath.Join(r.dir, cgroupsFile), c)
	}
	if err != nil {
		return err
	}
	m.cgroups = cgroups
	if err := m.prepare(r.rootfs); err != nil {
		m.markExited()
		return err
	}
	if err := m.boot(); err != nil {
		m.markExited()
		return err
	}
	return m.waitSSH(ctx, machineBootWait)
}

// StopMachine powers the named machine off (SIGKILL after a short grace
// period) and removes its mounts and cgroups. Its files stay until Close.
func (r *Rig) StopMachine(name string) error {
	m := r.Machine(name)
	if m == nil {
		return fmt.Errorf("rig: no machine %q", name)
	}
	return m.stop(stopGrace)
}

// KillMachine ends the named machine abruptly, as a power failure would.
func (r *Rig) KillMachine(name string) error {
	m := r.Machine(name)
	if m == nil {
		return fmt.Errorf("rig: no machine %q", name)
	}
	return m.stop(0)
}

// Reachable tells whether the named machine accepts connections on its SSH
// port (a stopped or killed machine does not).
func (r *Rig) Reachable(ctx context.Context, name string) bool {
	m := r.Machine(name)
	return m != nil && m.reachable(ctx)
}

// onClose registers fn to run at Close, before the machines stop.
func (r *Rig) onClose(fn func() error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closers = append(r.closers, fn)
}

// Close stops every machine and service of the rig and removes everything it
// created: processes, mounts, the network namespace, cgroups, files. It is safe
// to call more than once and from a signal.
func (r *Rig) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		closers := r.closers
		machines := append([]*Machine(nil), r.machines...)
		r.mu.Unlock()
		signal.Stop(r.signals)
		close(r.quit)

		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			if err := closers[i](); err != nil {
				errs = append(errs, err)
			}
		}
		var wg sync.WaitGroup
		stopErrs := make([]error, len(machines))
		for i, m := range machines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				stopErrs[i] = m.stop(stopGrace)
			}()
		}
		wg.Wait()
		errs = append(errs, stopErrs...)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := teardownDir(ctx, r.dir); err != nil {
			errs = append(errs, err)
		}
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}

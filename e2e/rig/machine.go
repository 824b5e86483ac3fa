package rig

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// Machine is one systemd-nspawn machine of a rig.
type Machine struct {
	// Name is the machine's hostname, unique within its rig.
	Name string
	// Address is its static address on the rig's bridge.
	Address netip.Addr
	// HostKey is the SSH host key generated for this machine.
	HostKey ssh.PublicKey
	// ContainerdDir is the host directory bound at /var/lib/containerd.
	ContainerdDir string

	rig     *Rig
	dir     string   // machine state: upper, work, root, containerd, console.log
	cgroups []string // this machine's cgroup directories
	cmd     *exec.Cmd
	done    chan struct{} // closed when the nspawn process exited (or never started)
	exited  sync.Once
	stopped sync.Once
	stopErr error
}

// Console returns the path of the file holding the machine's console output
// (systemd's boot messages), the first thing to read when it does not boot.
func (m *Machine) Console() string { return filepath.Join(m.dir, "console.log") }

// Root returns the host path of the machine's root file system while it runs.
func (m *Machine) Root() string { return filepath.Join(m.dir, "root") }

// Running tells whether the machine's nspawn process is still alive.
func (m *Machine) Running() bool {
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// SSHAddress is host:port of the machine's sshd, reachable inside the rig's
// namespace (see Rig.DialContext).
func (m *Machine) SSHAddress() string {
	return netip.AddrPortFrom(m.Address, 22).String()
}

// SSH opens an SSH connection as root with the rig's key, checking the
// machine's host key.
func (m *Machine) SSH(ctx context.Context) (*ssh.Client, error) {
	conn, err := m.rig.DialContext(ctx, "tcp", m.SSHAddress())
	if err != nil {
		return nil, fmt.Errorf("rig: machine %s: connecting to sshd at %s: %w", m.Name, m.SSHAddress(), err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	cfg := &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(m.rig.signer)},
		HostKeyCallback: ssh.FixedHostKey(m.HostKey),
		Timeout:         10 * time.Second,
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, m.SSHAddress(), cfg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("rig: machine %s: SSH handshake: %w", m.Name, err)
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// Run runs a shell command on the machine over a new SSH connection and
// returns its standard output. stdin, if not nil, is fed to the command.
func (m *Machine) Run(ctx context.Context, command string, stdin io.Reader) (string, error) {
	c, err := m.SSH(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return "", fmt.Errorf("rig: machine %s: opening SSH session: %w", m.Name, err)
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr, s.Stdin = &stdout, &stderr, stdin
	done := make(chan error, 1)
	go func() { done <- s.Run(command) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		c.Close()
		return stdout.String(), fmt.Errorf("rig: machine %s: running %q: %w", m.Name, command, ctx.Err())
	}
	if err != nil {
		return stdout.String(), fmt.Errorf("rig: machine %s: running %q: %w: %s", m.Name, command, err, tail(stderr.String()+stdout.String(), 15))
	}
	return stdout.String(), nil
}

// WriteFile writes data to path on the machine (creating parent directories).
func (m *Machine) WriteFile(ctx context.Context, path string, data []byte, mode os.FileMode) error {
	cmd := fmt.Sprintf("mkdir -p %s && cat > %s.tmp && chmod %o %s.tmp && mv %s.tmp %s",
		shellQuote(filepath.Dir(path)), shellQuote(path), mode.Perm(), shellQuote(path), shellQuote(path), shellQuote(path))
	_, err := m.Run(ctx, cmd, bytes.NewReader(data))
	return err
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// prepare mounts the overlay root and writes the per-machine files into it.
func (m *Machine) prepare(rootfs string) error {
	for _, d := range []string{"upper", "work", "root", "containerd"} {
		if err := os.MkdirAll(filepath.Join(m.dir, d), 0o755); err != nil {
			return err
		}
	}
	root := m.Root()
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", rootfs, filepath.Join(m.dir, "upper"), filepath.Join(m.dir, "work"))
	if err := unix.Mount("overlay", root, "overlay", 0, opts); err != nil {
		return fmt.Errorf("rig: machine %s: mounting overlay root at %s: %w", m.Name, root, err)
	}
	hostPEM, hostSigner, err := newEd25519("root@" + m.Name)
	if err != nil {
		return err
	}
	m.HostKey = hostSigner.PublicKey()
	machineID := make([]byte, 16)
	rand.Read(machineID)
	// A default route, as every real node has: kube-proxy's DNAT of Service
	// addresses (10.96.0.1, ...) only happens after the kernel found a route.
	// It ends at the bridge, inside a namespace without any way out.
	network := fmt.Sprintf("[Match]\nName=host0\n\n[Network]\nAddress=%s/%d\nGateway=%s\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
		m.Address, m.rig.prefix.Bits(), m.rig.bridge)
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{"etc/hostname", []byte(m.Name + "\n"), 0o644},
		{"etc/hosts", []byte(fmt.Sprintf("127.0.0.1 localhost\n%s %s\n", m.Address, m.Name)), 0o644},
		{"etc/machine-id", []byte(hex.EncodeToString(machineID) + "\n"), 0o444},
		// The site's name server is inside the rig's network (the bridge address, where nothing
		// answers: an air-gapped site's DNS that knows no outside name), never the host's
		// resolver that debootstrap copied into the image, which is outside the rig.
		{"etc/resolv.conf", []byte(fmt.Sprintf("nameserver %s\n", m.rig.bridge)), 0o644},
		{"etc/systemd/network/10-host0.network", []byte(network), 0o644},
		{"etc/ssh/ssh_host_ed25519_key", hostPEM, 0o600},
		{"etc/ssh/ssh_host_ed25519_key.pub", ssh.MarshalAuthorizedKey(m.HostKey), 0o644},
		{"root/.ssh/authorized_keys", ssh.MarshalAuthorizedKey(m.rig.signer.PublicKey()), 0o600},
	}
	for _, f := range files {
		p := filepath.Join(root, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		os.Remove(p) // may be a read-only file from the image
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return fmt.Errorf("rig: machine %s: writing %s: %w", m.Name, f.path, err)
		}
	}
	return nil
}

// launcher moves itself into the machine's cgroups and then becomes nspawn
// inside the rig's network namespace.
const launcher = `for d in $RIG_CGROUPS; do echo $$ > "$d/cgroup.procs" || exit 1; done; exec "$@"`

// boot starts systemd-nspawn for the machine.
func (m *Machine) boot() error {
	console, err := os.OpenFile(m.Console(), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer console.Close()
	args := []string{"-c", launcher, "rig-launch",
		"nsenter", "--net=" + filepath.Join(netnsDir, m.rig.netns),
		"systemd-nspawn", "--quiet", "--register=no", "--keep-unit",
		"--machine=" + m.Name, "--directory=" + m.Root(), "--boot",
		"--network-bridge=" + bridgeName, "--capability=all", "--system-call-filter=@known",
		"--bind=" + m.ContainerdDir + ":/var/lib/containerd",
		"--console=read-only", "--link-journal=no", "--resolv-conf=off", "--timezone=off",
	}
	m.cmd = exec.Command("/bin/sh", args...)
	m.cmd.Env = append(os.Environ(), "RIG_CGROUPS="+strings.Join(m.cgroups, " "), "SYSTEMD_LOG_LEVEL=warning")
	m.cmd.Stdout, m.cmd.Stderr = console, console
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.cmd.Start(); err != nil {
		return fmt.Errorf("rig: machine %s: starting systemd-nspawn: %w", m.Name, err)
	}
	go func() {
		m.cmd.Wait()
		m.markExited()
	}()
	return nil
}

// markExited records that the machine's process is gone or never started.
func (m *Machine) markExited() { m.exited.Do(func() { close(m.done) }) }

// waitSSH waits until the machine answers SSH with its own host key.
func (m *Machine) waitSSH(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		select {
		case <-m.done:
			return fmt.Errorf("rig: machine %s: systemd-nspawn exited while booting (console %s): %s", m.Name, m.Console(), m.consoleTail())
		default:
		}
		attempt, cancelAttempt := context.WithTimeout(ctx, 3*time.Second)
		c, err := m.SSH(attempt)
		cancelAttempt()
		if err == nil {
			c.Close()
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("rig: machine %s: waited %v for sshd at %s: %v (console %s): %s", m.Name, timeout, m.SSHAddress(), last, m.Console(), m.consoleTail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (m *Machine) consoleTail() string {
	data, _ := os.ReadFile(m.Console())
	return tail(string(data), 20)
}

// stop ends the machine: a poweroff request first when graceful, SIGKILL of
// every process of the machine after the grace period (or at once), then its
// mounts and cgroups go. Safe to call more than once.
func (m *Machine) stop(grace time.Duration) error {
	m.stopped.Do(func() {
		var errs []error
		if m.cmd != nil && m.cmd.Process != nil {
			if grace > 0 {
				// nspawn turns SIGTERM into an orderly poweroff of the
				// machine's systemd.
				m.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-m.done:
				case <-time.After(grace):
				}
			}
			syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
			if err := killCgroups(m.cgroups, 15*time.Second); err != nil {
				errs = append(errs, fmt.Errorf("machine %s: %w", m.Name, err))
			}
			select {
			case <-m.done:
			case <-time.After(15 * time.Second):
				errs = append(errs, fmt.Errorf("rig: machine %s: systemd-nspawn (pid %d) did not exit 15s after SIGKILL", m.Name, m.cmd.Process.Pid))
			}
		}
		if err := unmountUnder(m.dir); err != nil {
			errs = append(errs, err)
		}
		if err := removeCgroupsRetry(m.cgroups, 5*time.Second); err != nil {
			errs = append(errs, err)
		}
		m.stopErr = errors.Join(errs...)
	})
	return m.stopErr
}

// reachable tells whether something accepts TCP connections on the
// machine's SSH port, for tests that check a stopped machine is gone.
func (m *Machine) reachable(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := m.rig.DialContext(ctx, "tcp", m.SSHAddress())
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Leader returns the host PID of the machine's init (its systemd), for
// `nsenter --target PID --all` when SSH does not work.
func (m *Machine) Leader() (int, error) {
	if m.cmd == nil || m.cmd.Process == nil || !m.Running() {
		return 0, fmt.Errorf("rig: machine %s is not running", m.Name)
	}
	pid := m.cmd.Process.Pid
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0, fmt.Errorf("rig: machine %s: children of systemd-nspawn (pid %d): %w", m.Name, pid, err)
	}
	f := strings.Fields(string(data))
	if len(f) != 1 {
		return 0, fmt.Errorf("rig: machine %s: systemd-nspawn (pid %d) has children %v, want exactly its init", m.Name, pid, f)
	}
	var leader int
	if _, err := fmt.Sscan(f[0], &leader); err != nil {
		return 0, err
	}
	return leader, nil
}

// PowerOff ends the machine at once, as a host that lost its power: its address then answers
// nothing. The rig's Close is still what tears it down.
func (m *Machine) PowerOff() error { return m.stop(0) }

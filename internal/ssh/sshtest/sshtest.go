// Package sshtest runs real OpenSSH sshd processes for tests, each in its own network namespace
// joined by veth pairs to a bridge inside a "lab" namespace that the test dials from. It also
// makes throwaway users (with passwords and sudoers rules) and keys. Everything it creates is torn
// down by the test's Cleanup, also when the test fails; leftovers of killed runs are swept.
//
// It needs root and the Debian packages openssh-server, openssh-client and sudo, which it
// installs when missing.
package sshtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/dhctl-dev/dhctl/internal/netns"
)

// TB is the part of testing.TB the harness uses (so benchmarks' main programs can use it too).
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
}

// namePrefix marks everything the harness creates; the pid after it tells whose it is.
const namePrefix = "dhctl-t-"

// Lab is a set of sshd hosts on one bridged test network.
type Lab struct {
	t      TB
	id     string // dhctl-t-<pid>-<n>
	NetNS  string // the namespace holding the bridge; dial from here
	Dir    string
	keyDir string // authorized_keys/<user>, readable by the users

	// RootKey is an unencrypted ed25519 key (OpenSSH format, 0600) authorized for root.
	RootKey string
	Hosts   []*Host
}

// Host is one sshd in its own namespace.
type Host struct {
	lab     *Lab
	Name    string
	NetNS   string
	Addr    string // IP on the lab network
	Port    int
	HostKey ssh.PublicKey
	dir     string
	args    []string // extra sshd arguments (Options.SSHDArgs)

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Options tune a lab.
type Options struct {
	// SSHDConfig is appended to each sshd_config. sshd keeps the first value it reads for most
	// keywords, so this cannot override the harness's own settings: use SSHDArgs for that.
	SSHDConfig string
	// SSHDArgs are extra sshd command-line arguments, e.g. {"-o", "UsePAM=yes"} (an -o option
	// overrides the config file) or {"-r"} (no re-exec per connection).
	SSHDArgs []string
}

// NewLab starts n sshd hosts. Requires root.
func NewLab(t TB, n int, opts Options) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("sshtest: must run as root (network namespaces, sshd, useradd); run the tests as root")
	}
	EnsureTools(t)
	sweepLeftovers(t)
	ctx := context.Background()
	id := fmt.Sprintf("%s%d-%s", namePrefix, os.Getpid(), randomHex(3))
	dir, err := os.MkdirTemp("", id+"-")
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	l := &Lab{t: t, id: id, NetNS: id + "-lab", Dir: dir, keyDir: filepath.Join(dir, "authorized_keys")}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// sshd reads authorized_keys as the target user: make the path traversable by everyone.
	must(t, os.Chmod(dir, 0o755))
	must(t, os.MkdirAll(l.keyDir, 0o755))
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // sshd's privilege separation dir
		t.Fatalf("sshtest: %v", err)
	}

	t.Cleanup(func() { deleteNetns(t, l.NetNS) })
	if err := netns.Add(ctx, l.NetNS); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	ipOrFail(t, "-n", l.NetNS, "link", "add", "br0", "type", "bridge")
	ipOrFail(t, "-n", l.NetNS, "addr", "add", "10.199.255.254/16", "dev", "br0")
	ipOrFail(t, "-n", l.NetNS, "link", "set", "br0", "up")

	l.RootKey = filepath.Join(dir, "root_ed25519")
	pub := writeKey(t, l.RootKey)
	l.Authorize(t, "root", pub)

	for i := 0; i < n; i++ {
		l.Hosts = append(l.Hosts, l.addHost(t, i, opts))
	}
	l.waitReady(t, l.Hosts)
	return l
}

func (l *Lab) addHost(t TB, i int, opts Options) *Host {
	h := &Host{
		lab:   l,
		Name:  fmt.Sprintf("h%d", i),
		NetNS: fmt.Sprintf("%s-h%d", l.id, i),
		Addr:  fmt.Sprintf("10.199.%d.%d", i/250, i%250+1),
		Port:  22,
		dir:   filepath.Join(l.Dir, fmt.Sprintf("h%d", i)),
		args:  opts.SSHDArgs,
	}
	must(t, os.MkdirAll(h.dir, 0o700))
	t.Cleanup(func() { deleteNetns(t, h.NetNS) })
	if err := netns.Add(context.Background(), h.NetNS); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	veth := fmt.Sprintf("v%d", i)
	ipOrFail(t, "-n", l.NetNS, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", h.NetNS)
	ipOrFail(t, "-n", l.NetNS, "link", "set", veth, "master", "br0", "up")
	ipOrFail(t, "-n", h.NetNS, "addr", "add", h.Addr+"/16", "dev", "eth0")
	ipOrFail(t, "-n", h.NetNS, "link", "set", "eth0", "up")

	h.HostKey = writeKey(t, filepath.Join(h.dir, "ssh_host_ed25519_key"))
	cfg := fmt.Sprintf(`ListenAddress %s:%d
HostKey %s
PidFile none
AuthorizedKeysFile %s/%%u
StrictModes no
UsePAM no
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
AllowTcpForwarding yes
UseDNS no
MaxStartups 200
MaxSessions 100
LogLevel ERROR
Subsystem sftp internal-sftp
%s
`, h.Addr, h.Port, filepath.Join(h.dir, "ssh_host_ed25519_key"), l.keyDir, opts.SSHDConfig)
	must(t, os.WriteFile(filepath.Join(h.dir, "sshd_config"), []byte(cfg), 0o600))
	t.Cleanup(h.stop)
	h.start(t)
	return h
}

func (h *Host) start(t TB) {
	t.Helper()
	args := append([]string{"netns", "exec", h.NetNS, "/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(h.dir, "sshd_config")}, h.args...)
	cmd := exec.Command("ip", args...)
	logf, err := os.OpenFile(filepath.Join(h.dir, "sshd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("sshtest: start sshd for %s: %v", h.Name, err)
	}
	h.mu.Lock()
	h.cmd = cmd
	h.mu.Unlock()
}

// Stop kills the sshd and every process under it (its connections); Restart brings it back.
func (h *Host) Stop() { h.stop() }

// stop kills the sshd and every process under it (its connections).
func (h *Host) stop() {
	h.mu.Lock()
	cmd := h.cmd
	h.cmd = nil
	h.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	for _, pid := range descendants(cmd.Process.Pid) {
		syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck
	}
	cmd.Process.Kill() //nolint:errcheck
	cmd.Wait()         //nolint:errcheck
}

// Restart stops the sshd and starts it again; with a new host key when rekey is set.
func (h *Host) Restart(t TB, rekey bool) {
	t.Helper()
	h.stop()
	if rekey {
		h.HostKey = writeKey(t, filepath.Join(h.dir, "ssh_host_ed25519_key"))
	}
	h.start(t)
	h.lab.waitReady(t, []*Host{h})
}

// KillConnections SIGKILLs the sshd's per-connection children (and what runs under them),
// cutting every SSH connection to the host while the listener stays up. It returns how many
// processes were killed.
func (h *Host) KillConnections() int {
	h.mu.Lock()
	cmd := h.cmd
	h.mu.Unlock()
	if cmd == nil {
		return 0
	}
	pids := descendants(cmd.Process.Pid)
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck
	}
	return len(pids)
}

// Log returns what the sshd printed (errors only).
func (h *Host) Log() string {
	b, _ := os.ReadFile(filepath.Join(h.dir, "sshd.log"))
	return string(b)
}

// DialContext connects from inside the lab namespace (use as ssh.Config.DialContext). It takes
// IP addresses only: a host name would be looked up through the machine's resolver, sending the
// query off the machine, so it is refused (resolve names with a StartDNS server instead).
func (l *Lab) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("sshtest: dial %s: %w", addr, err)
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return nil, fmt.Errorf("sshtest: dial %s: %q is not an IP address; tests must not resolve names through the machine's resolver (use sshtest.StartDNS)", addr, host)
	}
	return netns.Dialer(l.NetNS)(ctx, network, addr)
}

func (l *Lab) waitReady(t TB, hosts []*Host) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, h := range hosts {
		addr := net.JoinHostPort(h.Addr, strconv.Itoa(h.Port))
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			c, err := l.DialContext(ctx, "tcp", addr)
			cancel()
			if err == nil {
				buf := make([]byte, 4)
				c.SetReadDeadline(time.Now().Add(2 * time.Second)) //nolint:errcheck
				_, rerr := c.Read(buf)
				c.Close()
				if rerr == nil && string(buf) == "SSH-" {
					break
				}
				err = fmt.Errorf("no SSH banner: %v", rerr)
			}
			if time.Now().After(deadline) {
				t.Fatalf("sshtest: sshd %s (%s) not ready after 20s: %v; sshd log:\n%s", h.Name, addr, err, h.Log())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Authorize adds an authorized public key for user on every host of the lab.
func (l *Lab) Authorize(t TB, user string, pub ssh.PublicKey) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(l.keyDir, user), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	defer f.Close()
	if _, err := f.Write(ssh.MarshalAuthorizedKey(pub)); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
}

// writeKey writes a fresh unencrypted ed25519 private key (OpenSSH format, 0600) and its .pub.
func writeKey(t TB, path string) ssh.PublicKey {
	t.Helper()
	pubRaw, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "sshtest")
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	must(t, os.WriteFile(path, pem.EncodeToMemory(block), 0o600))
	pub, err := ssh.NewPublicKey(pubRaw)
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	must(t, os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(pub), 0o644))
	return pub
}

// descendants lists the pids of all processes below pid (children first found, then theirs).
func descendants(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the ")" closing the command name: state ppid ...
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		children[ppid] = append(children[ppid], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// deleteNetns kills whatever still runs in the namespace (e.g. sshd children orphaned by a
// killed test run), then deletes it.
func deleteNetns(t TB, name string) {
	pids, _ := netns.Pids(context.Background(), name)
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck
	}
	if err := netns.Delete(context.Background(), name); err != nil {
		t.Logf("sshtest: cleanup: %v", err)
	}
}

func ipOrFail(t TB, args ...string) {
	t.Helper()
	if err := netns.IP(context.Background(), args...); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
}

func must(t TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
}

// sweepLeftovers removes namespaces, users and sudoers files left by harness runs whose process
// is gone (killed before its cleanup ran).
func sweepLeftovers(t TB) {
	names, _ := netns.List()
	for _, n := range names {
		if pid, ok := ownerPid(n, namePrefix); ok && !alive(pid) {
			deleteNetns(t, n)
		}
	}
	sudoers, _ := os.ReadDir("/etc/sudoers.d")
	for _, e := range sudoers {
		if pid, ok := ownerPid(e.Name(), namePrefix); ok && !alive(pid) {
			os.Remove(filepath.Join("/etc/sudoers.d", e.Name()))
		}
	}
	passwd, _ := os.ReadFile("/etc/passwd")
	for _, line := range strings.Split(string(passwd), "\n") {
		name, _, _ := strings.Cut(line, ":")
		if pid, ok := ownerPid(name, userPrefix); ok && !alive(pid) {
			exec.Command("userdel", "-f", "-r", name).Run() //nolint:errcheck
		}
	}
}

// ownerPid parses "<prefix><pid>[-x]..." names.
func ownerPid(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, false
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	pid, err := strconv.Atoi(rest[:end])
	return pid, err == nil
}

func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// CPUTime is the CPU time used so far by the sshd and its reaped children (connections, and
// the commands they ran), from /proc/<pid>/stat (utime+stime+cutime+cstime, in clock ticks of
// 10 ms). Children still running are not included.
func (h *Host) CPUTime() time.Duration {
	h.mu.Lock()
	cmd := h.cmd
	h.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return 0
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// After the command name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
	var ticks int64
	for _, i := range []int{11, 12, 13, 14} {
		if i < len(fields) {
			v, _ := strconv.ParseInt(fields[i], 10, 64)
			ticks += v
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/dhctl-dev/dhctl/internal/ssh/sshtest"
)

func newPub(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Concurrent first contacts with many hosts must all end up pinned, in a 0600 file.
func TestConcurrentPinsAreNotLost(t *testing.T) {
	t.Run("shared-store", func(t *testing.T) { testConcurrentPins(t, true) })
	t.Run("store-per-client", func(t *testing.T) { testConcurrentPins(t, false) })
}

func testConcurrentPins(t *testing.T, shared bool) {
	dir := filepath.Join(t.TempDir(), "state")
	v := &hostKeyVerifier{policy: HostKeyPolicy{Mode: HostKeysTrustOnFirstUse, StateDir: dir}}
	if shared {
		v.policy.Pins = NewPinStore(dir)
	}
	keys := make([]ssh.PublicKey, 40)
	var wg sync.WaitGroup
	for i := range keys {
		keys[i] = newPub(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := fmt.Sprintf("10.0.0.%d:22", i+1)
			if _, err := v.verify(addr, &net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 22}, keys[i]); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i, k := range keys {
		st, err := v.verify(fmt.Sprintf("10.0.0.%d:22", i+1), &net.TCPAddr{}, k)
		if err != nil || st.Source != HostKeyPinned {
			t.Fatalf("host %d: %+v %v", i, st, err)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, PinnedHostsFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("pinned file: %v %v", fi.Mode(), err)
	}
	// Non-standard ports are pinned as [host]:port, as OpenSSH does, and stay distinct.
	if _, err := v.verify("10.0.0.1:2222", &net.TCPAddr{}, newPub(t)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, PinnedHostsFileName))
	if !strings.Contains(string(b), "[10.0.0.1]:2222 ") {
		t.Fatalf("pinned file:\n%s", b)
	}
	// The algorithms to ask a known host for follow what is on record.
	if got := knownHostKeyAlgorithms(v.policy, "10.0.0.1:22"); len(got) != 1 || got[0] != ssh.KeyAlgoED25519 {
		t.Fatalf("algorithms for a pinned ed25519 host: %v", got)
	}
	if got := knownHostKeyAlgorithms(v.policy, "10.9.9.9:22"); got != nil {
		t.Fatalf("algorithms for an unknown host: %v", got)
	}
}

func TestShellQuoteRoundTrips(t *testing.T) {
	for _, s := range []string{"", "plain", "it's", `a "b" $c \d`, "new\nline", "'''", "$(rm -rf /)"} {
		out, err := exec.Command("/bin/sh", "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("quote(%q) -> %q, %v", s, out, err)
		}
	}
}

func TestLineWriterAndTail(t *testing.T) {
	tl := newTail(3)
	var got []string
	w := newLineWriter(func(l string) { got = append(got, l); tl.add(l) })
	for _, chunk := range []string{"a", "b\nc\r\n", "", "d\ne", "\n", "tail-no-newline"} {
		w.Write([]byte(chunk))
	}
	w.flush()
	if strings.Join(got, "|") != "ab|c|d|e|tail-no-newline" {
		t.Fatalf("lines = %q", got)
	}
	if strings.Join(tl.lines(), "|") != "d|e|tail-no-newline" {
		t.Fatalf("tail = %q", tl.lines())
	}
	long := strings.Repeat("x", maxLineLen+10)
	got = nil
	w.Write([]byte(long))
	w.flush()
	if len(got) != 2 || len(got[0]) != maxLineLen {
		t.Fatalf("long line split into %d parts", len(got))
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want ErrorKind
	}{
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, KindRefused},
		{&net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}, KindDNS},
		{fmt.Errorf("ssh: handshake failed: %w", errors.New("ssh: unable to authenticate, attempted methods [none publickey]")), KindAuth},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, KindUnreachable},
		{os.ErrDeadlineExceeded, KindTimeout},
		{fmt.Errorf("ssh: handshake failed: %w", &HostKeyChangedError{}), KindHostKey},
	} {
		if got, _ := classify(tc.err, nil); got != tc.want {
			t.Errorf("classify(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestCommandErrorMessages(t *testing.T) {
	e := &CommandError{Host: "u@h:22", Command: "apt-get install x", ExitCode: 100, Tail: []string{"E: no such package"}}
	if s := e.Error(); !strings.Contains(s, "u@h:22") || !strings.Contains(s, "status 100") || !strings.Contains(s, "E: no such package") {
		t.Fatal(s)
	}
	lost := &CommandError{Host: "u@h:22", Command: "reboot", ExitCode: -1, Err: fmt.Errorf("%w: eof", ErrConnectionLost)}
	if !errors.Is(lost, ErrConnectionLost) || !strings.Contains(lost.Error(), "not re-run") {
		t.Fatal(lost.Error())
	}
}

// A name with several addresses: each is dialled in turn, given a share of the time left, and
// DialContext only ever sees IP addresses (looked up through Config.Resolver).
func TestDialTCPTriesEachResolvedAddress(t *testing.T) {
	dns := sshtest.StartDNS(t, map[string][]string{"two.lab.test": {"192.0.2.1", "192.0.2.2"}})
	type dialed struct {
		addr string
		left time.Duration
	}
	var got []dialed
	cfg := Config{
		Host: "two.lab.test", User: "u", Auth: Auth{Password: "x"}, HostKeys: HostKeyPolicy{Mode: HostKeysInsecureIgnore},
		Resolver: dns.Resolver(),
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			deadline, _ := ctx.Deadline()
			got = append(got, dialed{addr, time.Until(deadline)})
			if addr == "192.0.2.1:22" {
				return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
			}
			a, b := net.Pipe()
			t.Cleanup(func() { a.Close(); b.Close() })
			return a, nil
		},
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := c.dialTCP(ctx, "two.lab.test", 22)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if len(got) != 2 || got[0].addr != "192.0.2.1:22" || got[1].addr != "192.0.2.2:22" {
		t.Fatalf("dialled %+v, want 192.0.2.1:22 then 192.0.2.2:22", got)
	}
	if got[0].left > 6*time.Second || got[1].left < 8*time.Second {
		t.Fatalf("time given to each address: %+v; want about half of 10s for the first, the rest for the last", got)
	}
}

// A destroyed machine's pins go (every port), and nobody else's: the machine made in its place
// at the same address is pinned anew on first use instead of refused as a changed key.
func TestUnpinForgetsOneHostOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	v := &hostKeyVerifier{policy: HostKeyPolicy{Mode: HostKeysTrustOnFirstUse, StateDir: dir}}
	for _, addr := range []string{"10.0.0.1:22", "10.0.0.1:2222", "10.0.0.10:22", "10.0.0.2:22"} {
		if _, err := v.verify(addr, &net.TCPAddr{}, newPub(t)); err != nil {
			t.Fatal(err)
		}
	}
	if err := Unpin(dir, "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	replacement := newPub(t)
	if st, err := v.verify("10.0.0.1:22", &net.TCPAddr{}, replacement); err != nil || st.Source == HostKeyPinned {
		t.Fatalf("the replaced machine's new key after Unpin: %+v %v, want pinned anew", st, err)
	}
	for _, addr := range []string{"10.0.0.10:22", "10.0.0.2:22"} {
		var changed *HostKeyChangedError
		if _, err := v.verify(addr, &net.TCPAddr{}, newPub(t)); !errors.As(err, &changed) {
			t.Errorf("%s with another key after unpinning 10.0.0.1: %v, want its pin kept (a changed key)", addr, err)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, PinnedHostsFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("pinned file after Unpin: %v %v", fi, err)
	}
	if err := Unpin(filepath.Join(t.TempDir(), "none"), "10.0.0.1"); err != nil {
		t.Errorf("Unpin with no pinned file: %v", err)
	}
}

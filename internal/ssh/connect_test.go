package ssh_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	dssh "github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/internal/ssh/sshtest"
)

func TestDirectConnectionPinsHostKeyAndRunsCommands(t *testing.T) {
	t.Parallel()
	lab := sshtest.NewLab(t, 1, sshtest.Options{})
	h := lab.Hosts[0]
	logs := &logBuffer{}
	cfg := rootConfig(t, lab, h, logs)
	c := newClient(t, cfg)

	if got := output(t, c, dssh.Command{Cmd: "echo hello; whoami"}); got != "hello\nroot" {
		t.Fatalf("output = %q, want hello/root", got)
	}
	st := c.HostKey()
	if st.Source != dssh.HostKeyNewlyPinned || st.Fingerprint != ssh.FingerprintSHA256(h.HostKey) {
		t.Fatalf("host key status = %+v, want newly pinned %s", st, ssh.FingerprintSHA256(h.HostKey))
	}
	pinned := filepath.Join(cfg.HostKeys.StateDir, dssh.PinnedHostsFileName)
	fi, err := os.Stat(pinned)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("pinned file %s: %v, mode %v; want 0600", pinned, err, fi.Mode().Perm())
	}

	// A failing command: exit status and the last lines of its output (both streams) in the error.
	res, err := c.Run(ctxT(t, 20*time.Second), dssh.Command{Cmd: "for i in 1 2 3; do echo line$i; done; echo oops >&2; exit 3"})
	var ce *dssh.CommandError
	if !errors.As(err, &ce) || ce.ExitCode != 3 || res.ExitCode != 3 {
		t.Fatalf("want CommandError with exit 3, got %v (result %+v)", err, res)
	}
	for _, want := range []string{"line3", "oops", "exited with status 3", "root@" + h.Addr + ":22"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// Output is streamed to the logger line by line, tagged with the host.
	if l := logs.String(); !strings.Contains(l, "msg=line2") || !strings.Contains(l, "host="+h.Addr) {
		t.Errorf("remote output not logged per line with the host tag:\n%s", l)
	}

	// A second client with the same state dir finds the key pinned.
	c2 := newClient(t, cfg)
	if err := c2.Connect(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if st := c2.HostKey(); st.Source != dssh.HostKeyPinned {
		t.Fatalf("second connection host key source = %q, want pinned", st.Source)
	}

	// A cancelled context stops a running command.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Run(ctx, dssh.Command{Cmd: "sleep 30"})
	t.Logf("cancel took %s: %v", time.Since(start), err)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
		t.Fatalf("cancelled command: err=%v after %s", err, time.Since(start))
	}
}

func TestChangedHostKeyIsRefused(t *testing.T) {
	t.Parallel()
	lab := sshtest.NewLab(t, 1, sshtest.Options{})
	h := lab.Hosts[0]
	cfg := rootConfig(t, lab, h, nil)
	if err := newClient(t, cfg).Connect(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	old := ssh.FingerprintSHA256(h.HostKey)
	h.Restart(t, true)

	err := newClient(t, cfg).Connect(ctxT(t, 10*time.Second))
	var changed *dssh.HostKeyChangedError
	var ce *dssh.ConnectError
	if !errors.As(err, &changed) || !errors.As(err, &ce) || ce.Kind != dssh.KindHostKey {
		t.Fatalf("want a host key change error, got %v", err)
	}
	for _, want := range []string{old, ssh.FingerprintSHA256(h.HostKey), "ssh-keygen -R", h.Addr} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}

	// Turning checking off connects anyway (and says so in the status).
	cfg.HostKeys.Mode = dssh.HostKeysInsecureIgnore
	c := newClient(t, cfg)
	if err := c.Connect(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if c.HostKey().Source != dssh.HostKeyUnchecked {
		t.Fatalf("source = %q, want unchecked", c.HostKey().Source)
	}
}

func TestUserKnownHostsIsHonoured(t *testing.T) {
	t.Parallel()
	lab := sshtest.NewLab(t, 1, sshtest.Options{})
	h := lab.Hosts[0]
	cfg := rootConfig(t, lab, h, nil)
	known := filepath.Join(t.TempDir(), "known_hosts")
	cfg.HostKeys.UserKnownHostsFile = known

	// Listed with the right key: accepted from known_hosts, nothing pinned.
	line := h.Addr + " " + string(ssh.MarshalAuthorizedKey(h.HostKey))
	if err := os.WriteFile(known, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, cfg)
	if err := c.Connect(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if c.HostKey().Source != dssh.HostKeyFromKnownHosts {
		t.Fatalf("source = %q, want known_hosts", c.HostKey().Source)
	}
	if _, err := os.Stat(filepath.Join(cfg.HostKeys.StateDir, dssh.PinnedHostsFileName)); !os.IsNotExist(err) {
		t.Fatalf("a key listed in known_hosts must not be pinned again (stat: %v)", err)
	}

	// Listed with another key: refused even though nothing is pinned.
	other := sshtest.NewLab(t, 1, sshtest.Options{}).Hosts[0].HostKey
	if err := os.WriteFile(known, []byte(h.Addr+" "+string(ssh.MarshalAuthorizedKey(other))), 0o600); err != nil {
		t.Fatal(err)
	}
	err := newClient(t, cfg).Connect(ctxT(t, 10*time.Second))
	var changed *dssh.HostKeyChangedError
	if !errors.As(err, &changed) || changed.File != known {
		t.Fatalf("want HostKeyChangedError naming %s, got %v", known, err)
	}

	// Strict mode refuses a host that is nowhere on record.
	cfg.HostKeys = dssh.HostKeyPolicy{Mode: dssh.HostKeysStrict, StateDir: t.TempDir()}
	err = newClient(t, cfg).Connect(ctxT(t, 10*time.Second))
	if err == nil || !strings.Contains(err.Error(), "unknown") {
		t.Fatalf("strict mode with an unknown host: want refusal, got %v", err)
	}
}

// Host names are looked up through Config.Resolver, here a DNS server of the test's own on
// loopback (the lab's dialer takes IP addresses only), and pinned under the name.
func TestHostNamesResolveThroughTheConfiguredResolver(t *testing.T) {
	t.Parallel()
	lab := sshtest.NewLab(t, 1, sshtest.Options{})
	h := lab.Hosts[0]
	dns := sshtest.StartDNS(t, map[string][]string{"h0.lab.test": {h.Addr}})
	cfg := rootConfig(t, lab, h, nil)
	cfg.Host = "h0.lab.test"
	cfg.Resolver = dns.Resolver()
	c := newClient(t, cfg)
	if got := output(t, c, dssh.Command{Cmd: "hostname -I"}); strings.TrimSpace(got) != h.Addr {
		t.Fatalf("connected to %q, want %s", got, h.Addr)
	}
	if st := c.HostKey(); st.Address != "h0.lab.test:22" || st.Source != dssh.HostKeyNewlyPinned {
		t.Fatalf("host key status %+v, want newly pinned for h0.lab.test:22", st)
	}
	if q := dns.Queries(); !slices.Contains(q, "h0.lab.test") {
		t.Fatalf("the test's DNS server was not asked: %q", q)
	}
}

func TestBastion(t *testing.T) {
	t.Parallel()
	lab := sshtest.NewLab(t, 2, sshtest.Options{})
	bastion, target := lab.Hosts[0], lab.Hosts[1]
	logs := &logBuffer{}
	cfg := rootConfig(t, lab, target, logs)
	// The bastion by name: resolved through Config.Resolver too.
	cfg.Bastion = dssh.Endpoint{Host: "bastion.lab.test", Port: bastion.Port}
	cfg.Resolver = sshtest.StartDNS(t, map[string][]string{"bastion.lab.test": {bastion.Addr}}).Resolver()
	// Refuse direct dials to the target: the only way there is through the bastion.
	cfg.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if strings.HasPrefix(addr, target.Addr+":") {
			return nil, errors.New("test: direct dial to the target is forbidden")
		}
		return lab.DialContext(ctx, network, addr)
	}
	c := newClient(t, cfg)
	// The target sees the connection coming from the bastion's address.
	got := output(t, c, dssh.Command{Cmd: "echo $SSH_CLIENT | cut -d' ' -f1"})
	if got != bastion.Addr {
		t.Fatalf("target saw client %q, want the bastion %s", got, bastion.Addr)
	}
	if st := c.BastionHostKey(); st.Source != dssh.HostKeyNewlyPinned || st.Fingerprint != ssh.FingerprintSHA256(bastion.HostKey) {
		t.Fatalf("bastion host key = %+v", st)
	}
	if st := c.HostKey(); st.Fingerprint != ssh.FingerprintSHA256(target.HostKey) {
		t.Fatalf("target host key = %+v", st)
	}
	// Each pin is logged under the host it belongs to: the bastion's under the bastion.
	pins := map[string]string{}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "host key pinned on first use") {
			for _, role := range []string{"bastion", "target"} {
				if strings.Contains(line, "role="+role) {
					pins[role] = line
				}
			}
		}
	}
	if l := pins["bastion"]; !strings.Contains(l, "host=bastion.lab.test ") || !strings.Contains(l, ssh.FingerprintSHA256(bastion.HostKey)) {
		t.Errorf("bastion pin logged as %q, want host=bastion.lab.test and its fingerprint", l)
	}
	if l := pins["target"]; !strings.Contains(l, "host="+target.Addr+" ") {
		t.Errorf("target pin logged as %q, want host=%s", l, target.Addr)
	}

	// A changed bastion key is refused too, naming the bastion.
	bastion.Restart(t, true)
	err := newClient(t, cfg).Connect(ctxT(t, 10*time.Second))
	var changed *dssh.HostKeyChangedError
	if !errors.As(err, &changed) || !strings.Contains(err.Error(), "bastion root@bastion.lab.test:22") {
		t.Fatalf("want bastion host key change error, got %v", err)
	}
}

func TestAgentPasswordAndPassphraseKeys(t *testing.T) {
	t.Parallel()
	lab := sshtest.NewLab(t, 1, sshtest.Options{})
	h := lab.Hosts[0]
	dir := t.TempDir()
	user := lab.AddUser(t, sshtest.SudoNone)

	authorize := func(key string) {
		pubBytes, err := os.ReadFile(key + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey(pubBytes)
		if err != nil {
			t.Fatal(err)
		}
		lab.Authorize(t, "root", pub)
	}
	whoami := func(cfg dssh.Config) error {
		c, err := dssh.New(cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		out, err := c.Output(ctxT(t, 20*time.Second), dssh.Command{Cmd: "whoami"})
		if err == nil && out != cfg.User {
			t.Errorf("whoami = %q, want %q", out, cfg.User)
		}
		return err
	}

	t.Run("agent", func(t *testing.T) {
		key := filepath.Join(dir, "agent_key")
		sshKeygen(t, key, "-t", "ed25519", "-N", "")
		authorize(key)
		sock := filepath.Join(dir, "agent.sock")
		agent := exec.Command("ssh-agent", "-D", "-a", sock)
		agent.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := agent.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat(sock); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("ssh-agent socket did not appear within 10s")
			}
			time.Sleep(20 * time.Millisecond)
		}
		add := exec.Command("ssh-add", key)
		add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("ssh-add: %v: %s", err, out)
		}
		cfg := rootConfig(t, lab, h, nil)
		cfg.Auth = dssh.Auth{AgentSocket: sock}
		if err := whoami(cfg); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("password", func(t *testing.T) {
		cfg := rootConfig(t, lab, h, nil)
		cfg.User = user.Name
		cfg.Auth = dssh.Auth{Password: user.Password}
		if err := whoami(cfg); err != nil {
			t.Fatal(err)
		}
		cfg.Auth = dssh.Auth{Password: "wrong-" + user.Password}
		err := whoami(cfg)
		var ce *dssh.ConnectError
		if !errors.As(err, &ce) || ce.Kind != dssh.KindAuth || !strings.Contains(err.Error(), user.Name+"@"+h.Addr+":22") {
			t.Fatalf("wrong password: want auth error naming user@host:port, got %v", err)
		}
		if strings.Contains(err.Error(), user.Password) {
			t.Fatal("the password leaked into the error")
		}
	})

	for _, format := range []struct{ name, typ, fmtArg string }{
		{"openssh-ed25519", "ed25519", "OpenSSH"},
		{"pem-rsa", "rsa", "PEM"},
	} {
		t.Run("passphrase-"+format.name, func(t *testing.T) {
			key := filepath.Join(dir, format.name)
			args := []string{"-t", format.typ, "-N", "s3cret phrase"}
			if format.fmtArg == "PEM" {
				args = append(args, "-m", "PEM", "-b", "2048")
			}
			sshKeygen(t, key, args...)
			authorize(key)
			cfg := rootConfig(t, lab, h, nil)
			cfg.Auth = dssh.Auth{Keys: []dssh.KeyFile{{Path: key, Passphrase: "s3cret phrase"}}}
			if err := whoami(cfg); err != nil {
				t.Fatal(err)
			}
			// From a prompt.
			asked := 0
			cfg.Auth = dssh.Auth{Keys: []dssh.KeyFile{{Path: key}}, PassphrasePrompt: func(p string) ([]byte, error) {
				asked++
				return []byte("s3cret phrase"), nil
			}}
			if err := whoami(cfg); err != nil || asked != 1 {
				t.Fatalf("prompted passphrase: err=%v, asked %d times", err, asked)
			}
			// Wrong and missing passphrases are named as such.
			cfg.Auth = dssh.Auth{Keys: []dssh.KeyFile{{Path: key, Passphrase: "nope"}}}
			if err := whoami(cfg); err == nil || !strings.Contains(err.Error(), "wrong passphrase") || !strings.Contains(err.Error(), key) {
				t.Fatalf("wrong passphrase: got %v", err)
			}
			cfg.Auth = dssh.Auth{Keys: []dssh.KeyFile{{Path: key}}}
			if err := whoami(cfg); err == nil || !strings.Contains(err.Error(), "encrypted") {
				t.Fatalf("missing passphrase: got %v", err)
			}
		})
	}

	t.Run("inline-key-data", func(t *testing.T) {
		key := filepath.Join(dir, "inline_key")
		sshKeygen(t, key, "-t", "ed25519", "-N", "inline pass")
		authorize(key)
		data, err := os.ReadFile(key)
		if err != nil {
			t.Fatal(err)
		}
		cfg := rootConfig(t, lab, h, nil)
		cfg.Auth = dssh.Auth{Keys: []dssh.KeyFile{{Path: "SSHConfig sshAgentPrivateKeys[0]", Data: data, Passphrase: "inline pass"}}}
		if err := whoami(cfg); err != nil {
			t.Fatal(err)
		}
		cfg.Auth.Keys[0].Passphrase = "wrong"
		if err := whoami(cfg); err == nil || !strings.Contains(err.Error(), "SSHConfig sshAgentPrivateKeys[0]: wrong passphrase") {
			t.Fatalf("wrong passphrase of inline key: %v", err)
		}
	})

	t.Run("unusable-key-files", func(t *testing.T) {
		key := filepath.Join(dir, "open_key")
		sshKeygen(t, key, "-t", "ed25519", "-N", "")
		if err := os.Chmod(key, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := rootConfig(t, lab, h, nil)
		cfg.Auth = dssh.Auth{Keys: []dssh.KeyFile{{Path: key}}}
		if err := whoami(cfg); err == nil || !strings.Contains(err.Error(), "too open") || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("world-readable key: got %v", err)
		}
		cfg.Auth = dssh.Auth{Keys: []dssh.KeyFile{{Path: filepath.Join(dir, "missing")}}}
		if err := whoami(cfg); err == nil || !strings.Contains(err.Error(), "missing") || !strings.Contains(err.Error(), "root@") {
			t.Fatalf("missing key: got %v", err)
		}
		cfg.Auth = dssh.Auth{}
		if _, err := dssh.New(cfg); err == nil || !strings.Contains(err.Error(), "no authentication method") {
			t.Fatalf("no method: got %v", err)
		}
	})
}

func TestConnectErrorsNameTheTarget(t *testing.T) {
	t.Parallel()
	lab := sshtest.NewLab(t, 1, sshtest.Options{})
	h := lab.Hosts[0]
	cases := []struct {
		name string
		host string
		port int
		kind dssh.ErrorKind
		says string
	}{
		{"refused", h.Addr, 2222, dssh.KindRefused, "nothing listens on that port"},
		// On the lab network, nobody has that address.
		{"timeout", "10.199.9.9", 22, dssh.KindTimeout, "the connect timeout (1s) expired during the TCP connect to 10.199.9.9:22"},
		{"dns", "dhctl-no-such-host.invalid", 22, dssh.KindDNS, "does not resolve"},
	}
	// Names are asked of this server only: never the machine's resolver.
	dns := sshtest.StartDNS(t, nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := rootConfig(t, lab, h, nil)
			cfg.Host, cfg.Port = tc.host, tc.port
			cfg.ConnectTimeout = time.Second
			cfg.Resolver = dns.Resolver()
			start := time.Now()
			err := newClient(t, cfg).Connect(context.Background())
			var ce *dssh.ConnectError
			if !errors.As(err, &ce) || ce.Kind != tc.kind {
				t.Fatalf("want %q error, got %v", tc.kind, err)
			}
			target := "root@" + net.JoinHostPort(tc.host, fmt.Sprint(tc.port))
			if !strings.Contains(err.Error(), target) || !strings.Contains(err.Error(), tc.says) || time.Since(start) > 10*time.Second {
				t.Fatalf("error %q does not name %s or say %q (or took %s)", err, target, tc.says, time.Since(start))
			}
		})
	}
	if q := dns.Queries(); !slices.Contains(q, "dhctl-no-such-host.invalid") {
		t.Fatalf("the name was not looked up through Config.Resolver (queries %q)", q)
	}
	t.Run("auth", func(t *testing.T) {
		cfg := rootConfig(t, lab, h, nil)
		cfg.User = "nobody"
		err := newClient(t, cfg).Connect(context.Background())
		var ce *dssh.ConnectError
		if !errors.As(err, &ce) || ce.Kind != dssh.KindAuth || !strings.Contains(err.Error(), "nobody@"+h.Addr+":22") ||
			!strings.Contains(err.Error(), lab.RootKey) {
			t.Fatalf("want auth error naming user, host and the key tried, got %v", err)
		}
	})
}

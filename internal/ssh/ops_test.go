package ssh_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/internal/netns"
	dssh "github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/internal/ssh/sshtest"
)

func TestSudo(t *testing.T) {
	t.Parallel()
	lab := sshtest.NewLab(t, 1, sshtest.Options{})
	h := lab.Hosts[0]
	logs := &logBuffer{}
	as := func(u *sshtest.User, sudoPassword string) *dssh.Client {
		cfg := rootConfig(t, lab, h, logs)
		cfg.User = u.Name
		cfg.Auth = dssh.Auth{Keys: []dssh.KeyFile{{Path: u.Key}}}
		cfg.SudoPassword = sudoPassword
		return newClient(t, cfg)
	}
	nopass := lab.AddUser(t, sshtest.SudoNoPassword)
	withpass := lab.AddUser(t, sshtest.SudoPassword)
	nosudo := lab.AddUser(t, sshtest.SudoNone)
	ttyOnly := lab.AddUser(t, sshtest.SudoRequireTTY)

	if got := output(t, as(nopass, ""), dssh.Command{Cmd: "id -u", Sudo: true}); got != "0" {
		t.Fatalf("passwordless sudo: id -u = %q", got)
	}
	c := as(withpass, withpass.Password)
	if got := output(t, c, dssh.Command{Cmd: "id -u; echo to-stderr >&2", Sudo: true}); got != "0" {
		t.Fatalf("sudo with password: id -u = %q", got)
	}
	// stdin reaches the command after the password, intact.
	if got := output(t, c, dssh.Command{Cmd: "cat; id -un", Sudo: true, Stdin: strings.NewReader("line1\nline2\n")}); got != "line1\nline2\nroot" {
		t.Fatalf("stdin under sudo = %q", got)
	}
	// A failing command under sudo is the command's failure, not sudo's.
	_, err := c.Run(ctxT(t, 20*time.Second), dssh.Command{Cmd: "exit 7", Sudo: true})
	var ce *dssh.CommandError
	if !errors.As(err, &ce) || ce.ExitCode != 7 {
		t.Fatalf("want exit 7, got %v", err)
	}

	for _, tc := range []struct {
		name string
		user *sshtest.User
		pass string
		want error
		hint string
	}{
		{"password-required", withpass, "", dssh.ErrSudoPasswordRequired, "give the sudo password"},
		{"wrong-password", withpass, "not-the-password", dssh.ErrSudoPasswordIncorrect, "check the sudo password"},
		{"not-allowed", nosudo, nosudo.Password, dssh.ErrSudoNotAllowed, "not in the sudoers"},
		{"requiretty", ttyOnly, "", dssh.ErrSudoNotAllowed, "!requiretty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := as(tc.user, tc.pass).Run(ctxT(t, 30*time.Second), dssh.Command{Cmd: "id -u", Sudo: true})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.user.Name+"@"+h.Addr) || !strings.Contains(err.Error(), tc.hint) {
				t.Fatalf("want %v naming the user and host, got %v", tc.want, err)
			}
		})
	}
	for _, secret := range []string{withpass.Password, nosudo.Password} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("a sudo password leaked into the log")
		}
	}
	if strings.Contains(logs.String(), "dhctl-sudo") || strings.Contains(logs.String(), "dhctl-pgid") {
		t.Fatalf("internal markers leaked into the log:\n%s", logs.String())
	}
}

// CheckSudo's probe (`sudo -n true`) is refused with "a password is required" for every user
// who has a sudo password: that expected answer goes to the debug log only, never at info level
// where the operator would read it as an error on every host.
func TestCheckSudoKeepsTheProbesAnswerOutOfTheOperatorsView(t *testing.T) {
	t.Parallel()
	lab := sshtest.NewLab(t, 1, sshtest.Options{})
	h := lab.Hosts[0]
	logs := &logBuffer{}
	check := func(u *sshtest.User, sudoPassword string) (dssh.SudoMode, error) {
		cfg := rootConfig(t, lab, h, logs)
		cfg.User = u.Name
		cfg.Auth = dssh.Auth{Keys: []dssh.KeyFile{{Path: u.Key}}}
		cfg.SudoPassword = sudoPassword
		return newClient(t, cfg).CheckSudo(ctxT(t, 30*time.Second))
	}
	withpass := lab.AddUser(t, sshtest.SudoPassword)
	nopass := lab.AddUser(t, sshtest.SudoNoPassword)
	nosudo := lab.AddUser(t, sshtest.SudoNone)

	if mode, err := check(withpass, withpass.Password); err != nil || mode != dssh.SudoWithPassword {
		t.Fatalf("user with a sudo password: %q, %v", mode, err)
	}
	if mode, err := check(nopass, ""); err != nil || mode != dssh.SudoPasswordless {
		t.Fatalf("passwordless user: %q, %v", mode, err)
	}
	// Refusals are the returned error's to explain.
	if _, err := check(withpass, ""); !errors.Is(err, dssh.ErrSudoPasswordRequired) {
		t.Fatalf("no sudo password given: %v", err)
	}
	if _, err := check(nosudo, nosudo.Password); !errors.Is(err, dssh.ErrSudoNotAllowed) {
		t.Fatalf("user without sudo: %v", err)
	}

	probed := false
	for _, line := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(line, "sudo:") {
			continue
		}
		probed = probed || strings.Contains(line, "a password is required")
		if !strings.Contains(line, "level=DEBUG") {
			t.Errorf("sudo's answer to a probe logged above debug level: %s", line)
		}
	}
	if !probed {
		t.Fatalf("the probe's answer is not in the debug log at all:\n%s", logs.String())
	}
}

func TestConnectionCutMidCommandThenReconnect(t *testing.T) {
	t.Parallel()
	lab := sshtest.NewLab(t, 1, sshtest.Options{})
	h := lab.Hosts[0]
	cfg := rootConfig(t, lab, h, nil)
	cfg.KeepaliveInterval = time.Second
	c := newClient(t, cfg)
	// The hosts share this machine's filesystem: the marker is visible (and removable) here.
	marker := filepath.Join(t.TempDir(), "runs")
	os.Chmod(filepath.Dir(marker), 0o777)

	errCh := make(chan error, 1)
	go func() {
		_, err := c.Run(ctxT(t, 60*time.Second), dssh.Command{Cmd: "echo run >> " + marker + "; echo started; sleep 60"})
		errCh <- err
	}()
	// Wait until the command runs, then cut the connection by killing sshd's connection processes.
	waitFor(t, 15*time.Second, "the command to start", func() bool {
		_, err := os.Stat(marker) // the host shares our filesystem
		return err == nil
	})
	if n := h.KillConnections(); n == 0 {
		t.Fatal("no sshd connection process to kill")
	}
	var err error
	select {
	case err = <-errCh:
	case <-time.After(20 * time.Second):
		t.Fatal("the command did not notice the cut within 20s")
	}
	if !errors.Is(err, dssh.ErrConnectionLost) || !strings.Contains(err.Error(), "not re-run") {
		t.Fatalf("want ErrConnectionLost, got %v", err)
	}
	// The next call reconnects; the interrupted command was not run again.
	if got := output(t, c, dssh.Command{Cmd: "wc -l < " + marker}); got != "1" {
		t.Fatalf("the interrupted command ran %s times, want 1", got)
	}

	// With the host down for good, reconnecting gives up after the configured attempts.
	cfg.ReconnectAttempts, cfg.ReconnectMaxDelay = 3, 300*time.Millisecond
	c2 := newClient(t, cfg)
	output(t, c2, dssh.Command{Cmd: "true"})
	h.Stop()
	start := time.Now()
	_, err = c2.Run(ctxT(t, 30*time.Second), dssh.Command{Cmd: "true"})
	if err == nil || !strings.Contains(err.Error(), "gave up after 3 attempts") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("want bounded reconnect failure, got %v", err)
	}
	t.Logf("gave up in %s: %v", time.Since(start), err)
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("giving up took %s", d)
	}
}

func TestForwardsSurviveReconnect(t *testing.T) {
	t.Parallel()
	lab := sshtest.NewLab(t, 1, sshtest.Options{})
	h := lab.Hosts[0]
	logs := &logBuffer{}
	cfg := rootConfig(t, lab, h, logs)
	cfg.KeepaliveInterval = time.Second
	c := newClient(t, cfg)

	// Local forward to a small HTTP server listening on the target's loopback.
	ln, err := netns.Listen(h.NetNS, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "from-target") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	lf, err := c.LocalForward(ctxT(t, 10*time.Second), "127.0.0.1:0", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lf.Close() })

	// Reverse forward: the target reaches an HTTP server on this machine.
	local, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lsrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "from-operator") })}
	go lsrv.Serve(local)
	t.Cleanup(func() { lsrv.Close() })
	rf, err := c.RemoteForward(ctxT(t, 10*time.Second), "127.0.0.1:0", local.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rf.Close() })
	_, rport, _ := net.SplitHostPort(rf.Addr())
	if rport == "0" {
		t.Fatalf("remote forward address %s has no port", rf.Addr())
	}
	fetchOnTarget := func() (string, error) {
		// bash's /dev/tcp: the target needs no HTTP client.
		return c.Output(ctxT(t, 10*time.Second), dssh.Command{Cmd: fmt.Sprintf(
			`bash -c 'exec 3<>/dev/tcp/127.0.0.1/%s; printf "GET / HTTP/1.0\r\nHost: x\r\n\r\n" >&3; cat <&3' | tail -n 1`, rport)})
	}
	check := func(stage string) {
		t.Helper()
		if got := httpGet(t, "http://"+lf.Addr()+"/"); got != "from-target" {
			t.Fatalf("%s: local forward returned %q", stage, got)
		}
		var got string
		waitFor(t, 20*time.Second, "the remote forward to answer", func() bool {
			got, err = fetchOnTarget()
			return err == nil && got == "from-operator"
		})
	}
	check("before the cut")
	h.KillConnections()
	// The forwards notice the drop (keepalive / closed connection) and come back.
	check("after the cut")
	for _, want := range []string{"ssh reconnected", "remote forward re-established"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q: the cut did not go through a reconnect:\n%s", want, logs.String())
		}
	}
	if rf.Err() != nil || lf.Err() != nil {
		t.Fatalf("forward errors: local %v, remote %v", lf.Err(), rf.Err())
	}
}

func TestUploadDownloadAndScript(t *testing.T) {
	t.Parallel()
	lab := sshtest.NewLab(t, 1, sshtest.Options{})
	h := lab.Hosts[0]
	c := newClient(t, rootConfig(t, lab, h, nil))

	// A tree of many files with assorted sizes and modes, plus generated files.
	src := t.TempDir()
	want := map[string]string{} // path -> "mode sha256"
	modes := []fs.FileMode{0o644, 0o600, 0o755, 0o640, 0o700}
	rng := mrand.New(mrand.NewPCG(1, 2))
	for i := 0; i < 400; i++ {
		rel := filepath.Join(fmt.Sprintf("d%d", i%7), fmt.Sprintf("sub%d", i%3), fmt.Sprintf("f%03d.bin", i))
		data := make([]byte, rng.IntN(64<<10))
		rand.Read(data)
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := modes[i%len(modes)]
		if err := os.WriteFile(filepath.Join(src, rel), data, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(src, rel), mode) // bypass umask
		want[rel] = fmt.Sprintf("%o %x", mode, sha256.Sum256(data))
	}
	gen := []dssh.File{
		{Path: "gen/config.yaml", Mode: 0o600, Data: []byte("secret: 1\n")},
		{Path: "gen/run.sh", Mode: 0o755, Data: []byte("#!/bin/sh\necho hi\n")},
	}
	for _, f := range gen {
		want[f.Path] = fmt.Sprintf("%o %x", f.Mode, sha256.Sum256(f.Data))
	}
	dest := filepath.Join(t.TempDir(), "upload")
	if err := c.Upload(ctxT(t, 60*time.Second), dssh.Upload{RemoteDir: dest, LocalDir: src, Files: gen}); err != nil {
		t.Fatal(err)
	}
	// Check byte for byte and mode by mode, computed on the host.
	out := output(t, c, dssh.Command{Cmd: "cd " + dest + " && find . -type f -printf '%m %P\\n' | sort -k2 && echo --- && find . -type f -printf '%P\\0' | xargs -0 sha256sum"})
	modesPart, sumsPart, _ := strings.Cut(out, "---\n")
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(modesPart), "\n") {
		mode, p, _ := strings.Cut(l, " ")
		got[p] = mode
	}
	for _, l := range strings.Split(strings.TrimSpace(sumsPart), "\n") {
		sum, p, _ := strings.Cut(l, "  ")
		got[p] += " " + sum
	}
	if len(got) != len(want) {
		t.Fatalf("remote has %d files, want %d", len(got), len(want))
	}
	for p, w := range want {
		if got[p] != w {
			t.Fatalf("%s: remote %q, want %q", p, got[p], w)
		}
	}

	// A remote failure is reported as such (with the remote's words), not as a broken stream.
	err := c.Upload(ctxT(t, 60*time.Second), dssh.Upload{RemoteDir: "/proc/dhctl-cannot-be-here", LocalDir: src})
	if err == nil || !strings.Contains(err.Error(), "/proc/dhctl-cannot-be-here") || strings.Contains(err.Error(), "tar stream") {
		t.Fatalf("upload to an impossible dir: %v", err)
	}

	// Download (atomically, 0600).
	local := filepath.Join(t.TempDir(), "admin.conf")
	if err := c.DownloadFile(ctxT(t, 20*time.Second), dest+"/gen/config.yaml", local, false); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(local)
	fi, _ := os.Stat(local)
	if err != nil || !bytes.Equal(b, gen[0].Data) || fi.Mode().Perm() != 0o600 {
		t.Fatalf("downloaded %q (mode %v, err %v)", b, fi.Mode().Perm(), err)
	}
	if err := c.DownloadFile(ctxT(t, 20*time.Second), dest+"/missing", local, false); err == nil || !strings.Contains(err.Error(), "No such file") {
		t.Fatalf("download of a missing file: %v", err)
	}

	// A script uploaded and run in one call, with arguments; it cannot eat its own text via stdin.
	res, err := c.RunScript(ctxT(t, 20*time.Second), "test", []byte("#!/bin/bash\nread x || echo stdin-closed\necho \"args: $1 $2\"\nexit 0\n"), []string{"a b", "c"}, false)
	if err != nil || strings.Join(res.Tail, "|") != "stdin-closed|args: a b c" {
		t.Fatalf("script: %v, output %q", err, res.Tail)
	}
}

func TestFanout(t *testing.T) {
	t.Parallel()
	lab := sshtest.NewLab(t, 4, sshtest.Options{})
	var clients []*dssh.Client
	for _, h := range lab.Hosts {
		clients = append(clients, newClient(t, rootConfig(t, lab, h, nil)))
	}
	// A refusing host and a black hole (nobody has that address) among the good ones.
	refused := rootConfig(t, lab, lab.Hosts[0], nil)
	refused.Port = 2222
	hole := rootConfig(t, lab, lab.Hosts[0], nil)
	hole.Host = "10.199.9.9"
	hole.ConnectTimeout = time.Minute // only the fan-out's per-host bound stops it
	clients = append(clients, newClient(t, refused))

	// Healthy hosts get a bound no loaded machine reaches; the black hole gets its own short one
	// below, so its failure is the bound and nothing else.
	cmd := func(ctx context.Context, c *dssh.Client) (string, error) {
		return c.Output(ctx, dssh.Command{Cmd: "hostname -I"})
	}
	results := dssh.Fanout(context.Background(), clients, dssh.FanoutOptions{Concurrency: 3, PerHostTimeout: 2 * time.Minute}, cmd)
	for i, r := range results[:4] {
		if r.Err != nil || strings.TrimSpace(r.Value) != lab.Hosts[i].Addr {
			t.Errorf("host %d: %q, %v", i, r.Value, r.Err)
		}
	}
	if r := results[4]; r.Err == nil || !strings.Contains(r.Err.Error(), "refused") {
		t.Errorf("refusing host: %v", r.Err)
	}
	if err := dssh.FanoutErrors(results); err == nil || strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("joined errors: %v", err)
	}
	// It names the bound that stopped it, the per-host one, not the connect timeout.
	results = dssh.Fanout(context.Background(), []*dssh.Client{newClient(t, hole)},
		dssh.FanoutOptions{PerHostTimeout: 3 * time.Second}, cmd)
	if r := results[0]; r.Err == nil || !strings.Contains(r.Err.Error(), "10.199.9.9") ||
		!strings.Contains(r.Err.Error(), "did not finish within 3s (the per-host timeout)") || strings.Contains(r.Err.Error(), "connect timeout") {
		t.Errorf("black-hole host: %v", r.Err)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 15 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A silently dead network (no FIN, no RST) is noticed by keepalives; once the network is back
// the next call reconnects.
func TestKeepaliveDetectsSilentDrop(t *testing.T) {
	t.Parallel()
	lab := sshtest.NewLab(t, 1, sshtest.Options{})
	h := lab.Hosts[0]
	logs := &logBuffer{}
	cfg := rootConfig(t, lab, h, logs)
	cfg.KeepaliveInterval = 300 * time.Millisecond
	cfg.KeepaliveCountMax = 2
	cfg.ConnectTimeout = 2 * time.Second
	c := newClient(t, cfg)
	output(t, c, dssh.Command{Cmd: "true"})

	if err := netns.IP(context.Background(), "-n", h.NetNS, "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	linkUp := func() { netns.IP(context.Background(), "-n", h.NetNS, "link", "set", "eth0", "up") }
	t.Cleanup(linkUp)
	waitFor(t, 10*time.Second, "keepalives to declare the connection dead", func() bool {
		return strings.Contains(logs.String(), "keepalive unanswered")
	})
	linkUp()
	if got := output(t, c, dssh.Command{Cmd: "echo back"}); got != "back" {
		t.Fatalf("after the network came back: %q", got)
	}
	if !strings.Contains(logs.String(), "ssh reconnected") {
		t.Fatalf("no reconnect logged:\n%s", logs.String())
	}
}

// A client retrying through a local forward to a port nothing listens on (an API server not up
// yet) is warned about once; the retries go to the debug log, and the forward keeps working.
func TestForwardRefusalsWarnOnce(t *testing.T) {
	t.Parallel()
	lab := sshtest.NewLab(t, 1, sshtest.Options{})
	h := lab.Hosts[0]
	logs := &logBuffer{}
	c := newClient(t, rootConfig(t, lab, h, logs))
	ln, err := netns.Listen(h.NetNS, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there now
	lf, err := c.LocalForward(ctxT(t, 10*time.Second), "127.0.0.1:0", closed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lf.Close() })
	for range 4 {
		conn, err := net.Dial("tcp", lf.Addr())
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, conn) // the forward closes it once the host refused
		conn.Close()
	}
	out := logs.String()
	if n := strings.Count(out, "level=WARN msg=\"local forward: host could not connect"); n != 1 {
		t.Errorf("%d warnings for 4 refused connections, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "level=DEBUG msg=\"local forward: host could not connect\""); n != 3 {
		t.Errorf("%d debug lines for the 3 later refusals, want 3:\n%s", n, out)
	}
}

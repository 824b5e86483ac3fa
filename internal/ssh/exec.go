package ssh

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Command is one remote command.
type Command struct {
	// Cmd is a shell command line, run by the login user's shell (or by /bin/sh under sudo). It
	// appears in logs and errors (unless LogAs is set): pass secrets on Stdin, never in Cmd.
	Cmd string
	// Sudo runs Cmd as root through sudo (unless the login user is root). Config.SudoPassword is
	// fed on sudo's prompt when it asks; it never appears on a command line or in a log.
	Sudo bool
	// Stdin, when set, is the command's standard input.
	Stdin io.Reader
	// Stdout, when set, receives the raw standard output instead of the logger (use it to
	// capture output or download data). Stderr is always logged line by line.
	Stdout io.Writer
	// LogAs labels the command in logs and errors instead of Cmd (e.g. "upload 12 files").
	LogAs string
	// Quiet logs the command's output at debug level instead of info: for probes whose
	// failure is an expected answer (e.g. `sudo -n true` printing "a password is required"),
	// which the operator must not see as an error. The output still reaches the error's tail.
	Quiet bool
}

// Result is a finished command.
type Result struct {
	ExitCode int
	Duration time.Duration
	// Tail is the last Config.OutputTailLines lines of output (stdout lines only when
	// Command.Stdout is not set).
	Tail []string
}

// Run runs cmd, streaming its output line by line to the logger tagged with the host. A non-zero
// exit status is a *CommandError carrying the last lines of output. If the connection drops
// while the command runs, the error wraps ErrConnectionLost and the command is NOT re-run; the
// next call reconnects. Opening the session (before anything runs remotely) is retried once
// over a fresh connection.
func (c *Client) Run(ctx context.Context, cmd Command) (Result, error) {
	start := time.Now()
	label := cmd.LogAs
	if label == "" {
		label = cmd.Cmd
	}
	conn, sess, err := c.newSession(ctx)
	if err != nil {
		return Result{ExitCode: -1}, &CommandError{Host: c.cfg.target(), Command: label, ExitCode: -1, Err: err}
	}
	defer sess.Close()

	tail := newTail(c.cfg.OutputTailLines)
	log := c.log.With("cmd", shorten(label, 120))
	log.Debug("ssh run", "sudo", cmd.Sudo)
	level := slog.LevelInfo
	if cmd.Quiet {
		level = slog.LevelDebug
	}
	stderr := newLineWriter(func(line string) { tail.add(line); log.Log(ctx, level, line, "stream", "stderr") })
	var stdout io.Writer
	var stdoutLines *lineWriter
	if cmd.Stdout != nil {
		stdout = cmd.Stdout
	} else {
		stdoutLines = newLineWriter(func(line string) { tail.add(line); log.Log(ctx, level, line, "stream", "stdout") })
		stdout = stdoutLines
	}
	sess.Stdout = stdout

	useSudo := cmd.Sudo && c.cfg.User != "root"
	var stdin io.WriteCloser
	if useSudo {
		if stdin, err = sess.StdinPipe(); err != nil {
			return Result{ExitCode: -1}, &CommandError{Host: c.cfg.target(), Command: label, ExitCode: -1, Err: err}
		}
	} else {
		sess.Stdin = cmd.Stdin
	}
	gate := newStderrGate(useSudo, c.cfg.SudoPassword, stdin, cmd.Stdin, stderr)
	cmdline := gate.wrap(cmd.Cmd)
	sess.Stderr = gate
	var sudo *stderrGate
	if useSudo {
		sudo = gate
	}

	if err := sess.Start(cmdline); err != nil {
		if c.lost(conn) {
			err = fmt.Errorf("%w: %v", ErrConnectionLost, err)
		}
		return Result{ExitCode: -1}, &CommandError{Host: c.cfg.target(), Command: label, ExitCode: -1, Err: err}
	}
	waitCh := make(chan error, 1)
	go func() { waitCh <- sess.Wait() }()
	var waitErr error
	select {
	case waitErr = <-waitCh:
	case <-ctx.Done():
		// sshd does not deliver signal requests here, so kill the command's process group
		// from a second session; closing the channel alone would leave it running.
		c.killRemote(gate.pgid(), useSudo)
		sess.Close()
		select {
		case <-waitCh:
		case <-time.After(5 * time.Second):
		}
		stderr.flush()
		if stdoutLines != nil {
			stdoutLines.flush()
		}
		return Result{ExitCode: -1, Tail: tail.lines()}, &CommandError{Host: c.cfg.target(), Command: label, ExitCode: -1,
			Err: fmt.Errorf("cancelled while waiting for the command to finish: %w", ctx.Err()), Tail: tail.lines()}
	}
	stderr.flush()
	if stdoutLines != nil {
		stdoutLines.flush()
	}
	res := Result{Duration: time.Since(start), Tail: tail.lines()}
	if waitErr == nil {
		if sudo != nil && sudo.err() != nil { // sudo failed but reported success: cannot happen, be safe
			return res, &CommandError{Host: c.cfg.target(), Command: label, ExitCode: 0, Err: sudo.err(), Tail: res.Tail}
		}
		return res, nil
	}
	ce := &CommandError{Host: c.cfg.target(), Command: label, ExitCode: -1, Tail: res.Tail, Err: waitErr}
	var exitErr *ssh.ExitError
	switch {
	case errors.As(waitErr, &exitErr):
		ce.ExitCode = exitErr.ExitStatus()
		ce.Signal = exitErr.Signal()
		if sudo != nil && !sudo.started() {
			ce.Err = sudo.failure()
			ce.ExitCode = -1
		}
	case c.lost(conn):
		ce.Err = fmt.Errorf("%w (%v)", ErrConnectionLost, waitErr)
	}
	res.ExitCode = ce.ExitCode
	return res, ce
}

// Output runs cmd and returns its standard output (trimmed of the final newline).
func (c *Client) Output(ctx context.Context, cmd Command) (string, error) {
	var buf bytes.Buffer
	cmd.Stdout = &limitedBuffer{buf: &buf, max: 16 << 20}
	_, err := c.Run(ctx, cmd)
	return strings.TrimSuffix(buf.String(), "\n"), err
}

// newSession opens a session, retrying once over a fresh connection when the current one turns
// out to be dead (nothing has run remotely yet, so that is safe).
func (c *Client) newSession(ctx context.Context) (*connection, *ssh.Session, error) {
	for attempt := 0; ; attempt++ {
		conn, err := c.ensure(ctx)
		if err != nil {
			return nil, nil, err
		}
		sess, err := conn.client.NewSession()
		if err == nil {
			return conn, sess, nil
		}
		if attempt > 0 || !c.lost(conn) {
			return nil, nil, fmt.Errorf("open ssh session: %w", err)
		}
	}
}

// stderrGate wraps a command so that it first reports its process group on stderr (to kill it on
// cancellation), and, under sudo, plays sudo's side of stdin: it answers the password prompt
// (recognised by a random marker) and passes the caller's stdin only once the command itself has
// started (a second marker printed by the wrapped shell). Until then stderr is sudo's: it is kept
// to explain a refusal. The markers never reach the log.
type stderrGate struct {
	sudo     bool
	password string
	pidMark  string
	prompt   string
	ready    string
	stdin    io.WriteCloser // nil without sudo (the session copies stdin itself)
	input    io.Reader
	out      *lineWriter // where stderr goes once the command runs

	mu       sync.Mutex
	buf      []byte
	group    int
	isReady  bool
	prompts  int
	messages []string
}

func newStderrGate(sudo bool, password string, stdin io.WriteCloser, input io.Reader, out *lineWriter) *stderrGate {
	nonce := randomHex(8)
	return &stderrGate{
		sudo:     sudo,
		password: password,
		pidMark:  "dhctl-pgid-" + nonce,
		prompt:   "[dhctl-sudo-" + nonce + "] password:",
		ready:    "dhctl-sudo-ready-" + nonce,
		stdin:    stdin,
		input:    input,
		out:      out,
	}
}

// wrap returns the remote command line. sshd starts each command as a session leader, so the
// login shell's pid is the command's process group. The sudo prompt ends with a newline so it
// arrives as a line.
func (s *stderrGate) wrap(cmd string) string {
	report := "printf '%s %s\\n' " + shellQuote(s.pidMark) + ` "$$" >&2; `
	if !s.sudo {
		return report + cmd
	}
	inner := "printf '%s\\n' " + shellQuote(s.ready) + " >&2; " + cmd
	mode := "-n"
	if s.password != "" {
		mode = "-S -p " + shellQuote(s.prompt+"\n")
	}
	return report + "exec sudo " + mode + " -- /bin/sh -c " + shellQuote(inner)
}

func (s *stderrGate) pgid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.group
}

// Write receives the remote stderr.
func (s *stderrGate) Write(p []byte) (int, error) {
	s.mu.Lock()
	if s.isReady {
		s.mu.Unlock()
		return s.out.Write(p)
	}
	s.buf = append(s.buf, p...)
	for !s.isReady {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 {
			break
		}
		line := string(s.buf[:i])
		s.buf = s.buf[i+1:]
		switch {
		case strings.HasPrefix(line, s.pidMark+" "):
			s.group, _ = strconv.Atoi(strings.TrimPrefix(line, s.pidMark+" "))
			if !s.sudo {
				s.isReady = true
			}
		case line == s.prompt:
			s.prompts++
			if s.prompts == 1 {
				io.WriteString(s.stdin, s.password+"\n") //nolint:errcheck // a failure shows as sudo's error
			} else {
				s.stdin.Close() // the password was refused; make sudo give up now
			}
		case line == s.ready:
			s.isReady = true
			go s.feedInput()
		case strings.TrimSpace(line) == "":
		default:
			s.messages = append(s.messages, line)
			s.out.Write([]byte(line + "\n")) //nolint:errcheck
		}
	}
	rest := s.buf
	if s.isReady {
		s.buf = nil
	}
	s.mu.Unlock()
	if s.isReady && len(rest) > 0 {
		s.out.Write(rest) //nolint:errcheck
	}
	return len(p), nil
}

func (s *stderrGate) feedInput() {
	if s.input != nil {
		io.Copy(s.stdin, s.input) //nolint:errcheck // the remote side ended; its exit status tells
	}
	s.stdin.Close()
}

func (s *stderrGate) started() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.isReady
}

func (s *stderrGate) err() error {
	if s.started() {
		return nil
	}
	return s.failure()
}

// failure explains why sudo did not run the command, from what sudo printed.
func (s *stderrGate) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := strings.Join(s.messages, " ")
	switch {
	case strings.Contains(msg, "not in the sudoers") || strings.Contains(msg, "not allowed to") || strings.Contains(msg, "may not run sudo"):
		return fmt.Errorf("%w: %s; add a sudoers rule for the user or connect as another user", ErrSudoNotAllowed, msg)
	case s.prompts > 1 || strings.Contains(msg, "incorrect password") || strings.Contains(msg, "Sorry, try again"):
		return fmt.Errorf("%w; check the sudo password (--ssh-sudo-password / sudoPassword)", ErrSudoPasswordIncorrect)
	case strings.Contains(msg, "password is required"):
		return fmt.Errorf("%w; give the sudo password or allow the user passwordless sudo (NOPASSWD), or the user may not be allowed to use sudo at all", ErrSudoPasswordRequired)
	case strings.Contains(msg, "must have a tty"):
		return fmt.Errorf("%w: %s; the host's sudoers has `Defaults requiretty`: disable it for this user (`Defaults:<user> !requiretty`)", ErrSudoNotAllowed, msg)
	case strings.Contains(msg, "sudo: not found") || strings.Contains(msg, "command not found"):
		return fmt.Errorf("sudo is not installed on the host: %s; install sudo or connect as root", msg)
	}
	if msg == "" {
		msg = "no message"
	}
	return fmt.Errorf("sudo did not run the command: %s", msg)
}

// lineWriter splits a stream into lines and hands each to emit. Very long lines are cut.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	emit func(string)
}

const maxLineLen = 64 << 10

func newLineWriter(emit func(string)) *lineWriter { return &lineWriter{emit: emit} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) > maxLineLen {
				w.emit(string(w.buf[:maxLineLen]))
				w.buf = append(w.buf[:0], w.buf[maxLineLen:]...)
				continue
			}
			break
		}
		w.emit(strings.TrimSuffix(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) == 0 {
		w.buf = nil // let a large consumed buffer be collected
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = nil
	}
}

// tail keeps the last n lines.
type tail struct {
	mu    sync.Mutex
	n     int
	items []string
}

func newTail(n int) *tail { return &tail{n: n} }

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.items = append(t.items, line)
	if len(t.items) > t.n {
		t.items = append(t.items[:0:0], t.items[len(t.items)-t.n:]...)
	}
}

func (t *tail) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.items...)
}

type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.buf.Len()+len(p) > b.max {
		return 0, fmt.Errorf("command output exceeds %d bytes", b.max)
	}
	return b.buf.Write(p)
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) //nolint:errcheck // never fails on Linux
	return hex.EncodeToString(b)
}

// killRemote SIGKILLs a remote process group from a new session (bounded; best effort).
func (c *Client) killRemote(pgid int, sudo bool) {
	if pgid <= 1 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Run(ctx, Command{Cmd: fmt.Sprintf("kill -KILL -- -%d", pgid), Sudo: sudo, Stdout: io.Discard, Quiet: true})
	if err != nil {
		c.log.Warn("could not kill the cancelled remote command", "pgid", pgid, "err", err)
	}
}

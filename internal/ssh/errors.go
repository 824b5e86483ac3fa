package ssh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrorKind classifies a connection failure so callers (and users) know what to fix.
type ErrorKind string

const (
	KindRefused     ErrorKind = "connection refused"
	KindTimeout     ErrorKind = "timeout"
	KindDNS         ErrorKind = "DNS lookup failed"
	KindUnreachable ErrorKind = "host unreachable"
	KindAuth        ErrorKind = "authentication failed"
	KindHostKey     ErrorKind = "host key verification failed"
	KindNetwork     ErrorKind = "connection failed"
	KindCancelled   ErrorKind = "cancelled"
)

// Connection stages, as ConnectTimeoutError.Stage names them.
const (
	stageResolve    = "DNS lookup"
	stageTCP        = "TCP connect"
	stageBastionTCP = "TCP connect from the bastion"
	stageBanner     = "wait for the SSH banner"
	stageKex        = "SSH key exchange"
	stageAuth       = "SSH authentication"
)

// ConnectTimeoutError is a ConnectError's Err when Config.ConnectTimeout (--ssh-connect-timeout)
// expired, naming the stage the attempt was in. It does not match context.DeadlineExceeded:
// the caller's deadline did not fire (when it does, the ConnectError wraps the caller's error
// instead).
type ConnectTimeoutError struct {
	Timeout time.Duration // Config.ConnectTimeout
	// Stage is one of "DNS lookup", "TCP connect", "TCP connect from the bastion",
	// "wait for the SSH banner", "SSH key exchange", "SSH authentication".
	Stage string
	Addr  string // host:port being reached
}

func (e *ConnectTimeoutError) Error() string {
	msg := "the connect timeout (" + e.Timeout.String() + ") expired " + stageWhere(e.Stage, e.Addr)
	switch e.Stage {
	case stageBanner:
		msg += ": the TCP connection was accepted but the server sent nothing"
	case stageTCP, stageBastionTCP:
		msg += ": no answer"
	}
	return msg
}

// stageWhere says where in connecting to addr the attempt was, for messages.
func stageWhere(stage, addr string) string {
	switch stage {
	case stageResolve:
		return "during the DNS lookup of " + addr
	case stageTCP, stageBastionTCP:
		return "during the " + stage + " to " + addr
	case stageBanner:
		return "waiting for the SSH banner of " + addr
	}
	return "during the " + stage + " with " + addr
}

func (e *ConnectTimeoutError) hint() string {
	switch e.Stage {
	case stageResolve:
		return "check the DNS servers or give an IP address, or raise the connect timeout (--ssh-connect-timeout)"
	case stageTCP, stageBastionTCP:
		return "check the address, firewalls and routes, or raise the connect timeout (--ssh-connect-timeout) if the network is just slow"
	case stageBanner:
		return "check that sshd, not another service, listens on that port (a busy server may also be slow to answer: raise --ssh-connect-timeout)"
	}
	return "the server is slow to answer; raise the connect timeout (--ssh-connect-timeout)"
}

// dialStage is the stage a failed dialTCP was in.
func dialStage(err error) string {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return stageResolve
	}
	return stageTCP
}

// ConnectError is a failure to reach or log in to a host. It names the user and host:port (and
// the bastion it went through), says what went wrong and what to do.
type ConnectError struct {
	Target string // user@host:port
	Hop    string // which hop failed: "bastion user@host:port" or "" for the target
	Via    string // bastion user@host:port when one is used
	Kind   ErrorKind
	Err    error
	Hint   string
}

func (e *ConnectError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ssh %s", e.Target)
	if e.Via != "" {
		fmt.Fprintf(&b, " via bastion %s", e.Via)
	}
	if e.Hop != "" {
		fmt.Fprintf(&b, ": at %s", e.Hop)
	}
	fmt.Fprintf(&b, ": %s: %v", e.Kind, e.Err)
	if e.Hint != "" {
		b.WriteString("; " + e.Hint)
	}
	return b.String()
}

func (e *ConnectError) Unwrap() error { return e.Err }

// permanent reports whether retrying cannot help (wrong credentials or a host key problem).
func (e *ConnectError) permanent() bool {
	return e.Kind == KindAuth || e.Kind == KindHostKey
}

// classify turns a dial/handshake error into a kind and a hint.
func classify(err error, offered []string) (ErrorKind, string) {
	var dnsErr *net.DNSError
	var openErr *ssh.OpenChannelError
	var changed *HostKeyChangedError
	msg := err.Error()
	switch {
	case errors.As(err, &changed):
		return KindHostKey, ""
	case strings.Contains(msg, "unable to authenticate"):
		return KindAuth, fmt.Sprintf("the server accepted none of: %s; check the user name, that the public key is in the user's authorized_keys, or the password", strings.Join(offered, ", "))
	case errors.As(err, &dnsErr):
		return KindDNS, "the host name does not resolve; check its spelling or use an IP address"
	case errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &openErr) && strings.Contains(openErr.Message, "refused")):
		return KindRefused, "nothing listens on that port; check that sshd runs there and the port is right"
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return KindUnreachable, "no route to the host; check the address and the network"
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err):
		return KindTimeout, "no answer in time; check the address, firewalls and routes"
	case strings.Contains(msg, "host key"):
		return KindHostKey, ""
	}
	return KindNetwork, ""
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// ErrConnectionLost is wrapped by errors from commands whose connection dropped while they ran.
// Such a command is NOT re-run: it may or may not have completed, and only the caller knows
// whether running it again is safe.
var ErrConnectionLost = errors.New("connection lost")

// CommandError is a remote command that failed: non-zero exit, killed by a signal, or its
// connection dropped. It carries the last lines of output.
type CommandError struct {
	Host     string // user@host:port
	Command  string // as the caller gave it (never includes secrets added by this package)
	ExitCode int    // -1 when unknown (signal, lost connection)
	Signal   string
	Err      error // underlying cause, e.g. ErrConnectionLost
	Tail     []string
}

func (e *CommandError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: command %q ", e.Host, shorten(e.Command, 200))
	switch {
	case errors.Is(e.Err, ErrConnectionLost):
		b.WriteString("was interrupted: the connection was lost; it may or may not have completed and was not re-run")
	case e.Signal != "":
		fmt.Fprintf(&b, "was killed by signal %s", e.Signal)
	case e.ExitCode >= 0:
		fmt.Fprintf(&b, "exited with status %d", e.ExitCode)
	default:
		fmt.Fprintf(&b, "failed: %v", e.Err)
	}
	if len(e.Tail) > 0 {
		fmt.Fprintf(&b, "; last %d lines of output:\n  %s", len(e.Tail), strings.Join(e.Tail, "\n  "))
	}
	return b.String()
}

func (e *CommandError) Unwrap() error { return e.Err }

// Sudo failures, wrapped in CommandError.Err.
var (
	ErrSudoNotAllowed        = errors.New("sudo is not allowed for this user")
	ErrSudoPasswordRequired  = errors.New("sudo asks for a password and none was given")
	ErrSudoPasswordIncorrect = errors.New("sudo refused the given sudo password")
)

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

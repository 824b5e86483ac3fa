// Package ssh is dhctl's SSH transport, built on golang.org/x/crypto/ssh (the ssh binary is never
// executed). A Client holds one connection to one host (optionally through one bastion), verifies
// host keys (trust on first use, pinned in the cluster's state dir), runs commands with or without
// sudo while streaming their output to a logger, ships files as one tar stream, forwards ports in
// both directions, and re-establishes a dropped connection with bounded backoff. Fanout runs an
// action on many hosts in parallel with a concurrency limit.
package ssh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// Defaults used when the matching Config field is zero.
const (
	DefaultPort              = 22
	DefaultConnectTimeout    = 15 * time.Second
	DefaultKeepaliveInterval = 10 * time.Second
	DefaultKeepaliveCountMax = 3
	DefaultReconnectAttempts = 5
	DefaultReconnectMaxDelay = 5 * time.Second
	DefaultOutputTailLines   = 20
)

// Config describes how to reach and authenticate to one host. Only Host and User are required.
type Config struct {
	// Host is the target's address or name, Port its SSH port (DefaultPort when 0).
	Host string
	Port int
	// User is the login user on the target.
	User string

	// Auth are the credentials tried, in order: private keys, then the agent, then the password.
	Auth Auth

	// Bastion, when its Host is set, is the one jump host the target is dialled through. Its
	// User defaults to User and its Port to DefaultPort; it authenticates with the same Auth.
	Bastion Endpoint

	// HostKeys says how host keys (target and bastion) are verified.
	HostKeys HostKeyPolicy

	// SudoPassword is fed to sudo on its prompt when a command runs with Sudo and sudo asks for
	// a password. It is never put on a command line and never logged.
	SudoPassword string

	// Logger receives connection events and remote output, tagged with the host. Nil discards.
	Logger *slog.Logger

	// ConnectTimeout (DefaultConnectTimeout when 0; the CLI's --ssh-connect-timeout) bounds one
	// connection attempt: name lookup, TCP connect, SSH handshake and authentication, through
	// the bastion too. When it expires the error is a ConnectError wrapping a
	// *ConnectTimeoutError that names it, its value and the stage reached.
	ConnectTimeout time.Duration
	// KeepaliveInterval is how often an idle connection is probed; after KeepaliveCountMax
	// unanswered probes in a row it is considered dead and closed. Negative disables keepalives.
	KeepaliveInterval time.Duration
	KeepaliveCountMax int
	// ReconnectAttempts bounds how many times a dropped connection is re-dialled, waiting an
	// exponentially growing delay (capped at ReconnectMaxDelay) between attempts.
	ReconnectAttempts int
	ReconnectMaxDelay time.Duration
	// OutputTailLines is how many last lines of remote output a command error carries.
	OutputTailLines int

	// Resolver looks up Host (or, with a bastion, Bastion.Host) when it is a name rather than an
	// IP address; DialContext is then given each address in turn. Nil uses net.DefaultResolver.
	// Through a bastion, the target's name is resolved by the bastion, not here. Tests point it
	// at a DNS server of their own so that no query leaves the machine.
	Resolver *net.Resolver
	// DialContext opens the TCP connection to the target (or the bastion), given an IP address
	// and port. Nil uses net.Dialer. Tests use it to dial inside a network namespace.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Endpoint is a host, port and user, used for the bastion.
type Endpoint struct {
	Host string
	Port int
	User string
}

// Auth holds the credentials offered to the server.
type Auth struct {
	// Keys are private key files (OpenSSH or PEM format), each with its optional passphrase.
	Keys []KeyFile
	// AgentSocket is the path of a running ssh-agent's socket (usually $SSH_AUTH_SOCK); empty
	// means no agent.
	AgentSocket string
	// Password is used for password authentication when non-empty.
	Password string
	// PassphrasePrompt, when set, is asked for the passphrase of an encrypted key that has none
	// in Keys (e.g. an interactive terminal prompt). It is asked at most once per key and
	// client, or once per key and run when the clients share a KeyCache.
	PassphrasePrompt func(keyPath string) ([]byte, error)
	// KeyCache, when set (NewKeyCache()), is shared by the clients of a run so that each key is
	// read, decrypted and, if needed, its passphrase asked for once, not once per host.
	// Optional.
	KeyCache *KeyCache
}

// KeyFile is a private key and its passphrase (empty when the key is not encrypted): a file on
// disk, or, when Data is set, the key itself (e.g. inline in an SSHConfig document), in which
// case Path only names it in messages.
type KeyFile struct {
	Path       string
	Data       []byte
	Passphrase string
}

// withDefaults returns a copy of c with zero fields replaced by defaults.
func (c Config) withDefaults() Config {
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.Bastion.Host != "" {
		if c.Bastion.Port == 0 {
			c.Bastion.Port = DefaultPort
		}
		if c.Bastion.User == "" {
			c.Bastion.User = c.User
		}
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.KeepaliveInterval == 0 {
		c.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if c.KeepaliveCountMax <= 0 {
		c.KeepaliveCountMax = DefaultKeepaliveCountMax
	}
	if c.ReconnectAttempts <= 0 {
		c.ReconnectAttempts = DefaultReconnectAttempts
	}
	if c.ReconnectMaxDelay <= 0 {
		c.ReconnectMaxDelay = DefaultReconnectMaxDelay
	}
	if c.OutputTailLines <= 0 {
		c.OutputTailLines = DefaultOutputTailLines
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.DialContext == nil {
		d := &net.Dialer{KeepAlive: 30 * time.Second}
		c.DialContext = d.DialContext
	}
	return c
}

func (c Config) validate() error {
	if c.Host == "" {
		return fmt.Errorf("ssh config: host is empty; give the address of the node to connect to")
	}
	if c.User == "" {
		return fmt.Errorf("ssh config for host %s: user is empty; give the login user (e.g. --ssh-user)", c.Host)
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("ssh config for host %s: port %d is out of range 1-65535", c.Host, c.Port)
	}
	if c.Bastion.Port < 0 || c.Bastion.Port > 65535 {
		return fmt.Errorf("ssh config for bastion %s: port %d is out of range 1-65535", c.Bastion.Host, c.Bastion.Port)
	}
	if len(c.Auth.Keys) == 0 && c.Auth.AgentSocket == "" && c.Auth.Password == "" {
		return fmt.Errorf("ssh config for %s@%s: no authentication method: give a private key (--ssh-agent-private-keys), run an ssh-agent (SSH_AUTH_SOCK) or give a password", c.User, c.Host)
	}
	switch c.HostKeys.Mode {
	case HostKeysTrustOnFirstUse, HostKeysStrict:
		if c.HostKeys.StateDir == "" && c.HostKeys.UserKnownHostsFile == "" {
			return fmt.Errorf("ssh config for %s: host key checking needs a state dir to pin keys in (or turn checking off explicitly)", c.Host)
		}
	case HostKeysInsecureIgnore:
	default:
		return fmt.Errorf("ssh config for %s: unknown host key mode %q (want tofu, strict or off)", c.Host, c.HostKeys.Mode)
	}
	return nil
}

// target is "user@host:port" for messages.
func (c Config) target() string {
	return c.User + "@" + hostPort(c.Host, c.Port)
}

func hostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// SplitHostPort accepts "host", "host:port", "[v6]:port" and bare IPv6; defPort (DefaultPort
// when 0) applies when no port is given.
func SplitHostPort(s string, defPort int) (string, int, error) {
	if defPort == 0 {
		defPort = DefaultPort
	}
	if h, p, err := net.SplitHostPort(s); err == nil {
		port, err := strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 {
			return "", 0, fmt.Errorf("host %q: port %q is not a number in 1-65535", s, p)
		}
		return h, port, nil
	}
	if strings.TrimSpace(s) == "" {
		return "", 0, errors.New("an empty host was given")
	}
	return strings.Trim(s, "[]"), defPort, nil
}

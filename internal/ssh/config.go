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
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
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
	if c.ConnectTimeout == 0 {
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
	// A user or port left in the host ("root@h", "h:2222", e.g. a flag passed on unparsed)
	// would otherwise only fail later, as a host name that does not resolve.
	if err := checkHost(c.Host); err != nil {
		return fmt.Errorf("ssh config: host %w; give the host alone: the user and the port are separate settings", err)
	}
	if c.Bastion.Host != "" {
		if err := checkHost(c.Bastion.Host); err != nil {
			return fmt.Errorf("ssh config: bastion host %w; give the bastion host alone: its user and port are separate settings", err)
		}
	}
	if c.User == "" {
		return fmt.Errorf("ssh config for host %s: user is empty; give the login user (e.g. --ssh-user)", c.Host)
	}
	if c.ConnectTimeout < 0 {
		return fmt.Errorf("ssh config for host %s: connect timeout %s is negative; give a positive duration (0 means the default, %s)", c.Host, c.ConnectTimeout, DefaultConnectTimeout)
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
// when 0) applies when no port is given. A user ("user@host") is refused: it belongs in
// Config.User (ParseEndpoint reads "[user@]host[:port]").
func SplitHostPort(s string, defPort int) (string, int, error) {
	if defPort == 0 {
		defPort = DefaultPort
	}
	if defPort < 0 || defPort > 65535 {
		return "", 0, fmt.Errorf("host %q: default port %d is out of range 1-65535", s, defPort)
	}
	ep, err := ParseEndpoint(s)
	if err != nil {
		return "", 0, err
	}
	if ep.User != "" {
		return "", 0, fmt.Errorf("host %q names a user (%q); give the host alone and the user separately (e.g. --ssh-user %s)", s, ep.User, ep.User)
	}
	if ep.Port == 0 {
		ep.Port = defPort
	}
	return ep.Host, ep.Port, nil
}

// ParseEndpoint parses "[user@]host[:port]". The host is a name, an IPv4 address, or an IPv6
// address: in brackets when a port follows ("[2001:db8::1]:2222"), bare otherwise. User is ""
// and Port is 0 when not given: an explicit port is always 1-65535 ("host:0" is an error), so
// 0 means "not given" and the caller applies its default. Errors say what is wrong with s.
func ParseEndpoint(s string) (Endpoint, error) {
	if strings.TrimSpace(s) == "" {
		return Endpoint{}, errors.New("an empty host was given")
	}
	if i := strings.Index(s, "://"); i >= 0 {
		return Endpoint{}, fmt.Errorf("host %q is a URL; give [user@]host[:port] (e.g. root@192.0.2.10:22) without %s://", redactUserinfo(s), s[:i])
	}
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return Endpoint{}, fmt.Errorf("host %q contains whitespace or control characters", redactUserinfo(s))
	}
	var ep Endpoint
	hostPart := s
	if user, rest, ok := strings.Cut(s, "@"); ok {
		switch {
		case strings.Contains(user, ":"):
			// Never echo what follows the colon: it is likely a password.
			return Endpoint{}, fmt.Errorf("host %q has a password after the user; a host never carries a password: authenticate with a key or ssh-agent instead", redactUserinfo(s))
		case user == "":
			return Endpoint{}, fmt.Errorf("host %q has an empty user before \"@\"", s)
		case strings.Contains(rest, "@"):
			return Endpoint{}, fmt.Errorf("host %q has more than one \"@\"; give [user@]host[:port]", s)
		}
		ep.User, hostPart = user, rest
	}
	host, port, err := splitHostPortPart(s, hostPart)
	if err != nil {
		return Endpoint{}, err
	}
	if port != "" {
		if ep.Port, err = ParsePort(port); err != nil {
			return Endpoint{}, fmt.Errorf("host %q: %w", s, err)
		}
	}
	if err := checkHost(host); err != nil {
		return Endpoint{}, fmt.Errorf("host %q: %w", s, err)
	}
	ep.Host = host
	return ep, nil
}

// splitHostPortPart splits "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 address.
func splitHostPortPart(s, hp string) (host, port string, err error) {
	if rest, ok := strings.CutPrefix(hp, "["); ok {
		inner, after, ok := strings.Cut(rest, "]")
		if !ok {
			return "", "", fmt.Errorf("host %q: \"[\" without \"]\"", s)
		}
		if after != "" {
			if port, ok = strings.CutPrefix(after, ":"); !ok {
				return "", "", fmt.Errorf("host %q: unexpected %q after \"]\"; give [address]:port", s, after)
			}
			if port == "" {
				return "", "", fmt.Errorf("host %q: empty port after \":\"", s)
			}
		}
		// OpenSSH writes [host]:port for names too (known_hosts), so brackets are not only
		// for IPv6; checkHost judges what is inside.
		return inner, port, nil
	}
	switch strings.Count(hp, ":") {
	case 0:
		return hp, "", nil
	case 1:
		host, port, _ = strings.Cut(hp, ":")
		if port == "" {
			return "", "", fmt.Errorf("host %q: empty port after \":\"", s)
		}
		return host, port, nil
	}
	if _, err := netip.ParseAddr(hp); err != nil {
		return "", "", fmt.Errorf("host %q has several \":\" but is not an IPv6 address; put an IPv6 address in brackets to give a port: [2001:db8::1]:22", s)
	}
	return hp, "", nil // a bare IPv6 address never carries a port
}

// checkHost refuses what cannot be a host name or address: an empty host, brackets, a slash, an
// "@" (a user belongs elsewhere) or a leading "-" (an option given where a host was expected).
func checkHost(h string) error {
	switch {
	case h == "":
		return errors.New("the host is empty")
	case strings.HasPrefix(h, "-"):
		return fmt.Errorf("%q looks like an option, not a host", h)
	case strings.ContainsAny(h, "@/[]"):
		return fmt.Errorf("%q is not a host name or address", h)
	case strings.Contains(h, ":"):
		if _, err := netip.ParseAddr(h); err != nil {
			return fmt.Errorf("%q is neither a host name nor an IP address", h)
		}
	}
	return nil
}

// redactUserinfo hides a password in "user:password@host" (or in a URL) for messages.
func redactUserinfo(s string) string {
	prefix, rest := "", s
	if i := strings.Index(s, "://"); i >= 0 {
		prefix, rest = s[:i+3], s[i+3:]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return s
	}
	user, _, hasPassword := strings.Cut(rest[:at], ":")
	if !hasPassword {
		return s
	}
	return prefix + user + ":<redacted>" + rest[at:]
}

// ParsePort parses a TCP port given as text (a flag, an environment variable): decimal digits
// for 1-65535. Port 0 is refused, not read as "the default": a caller wanting a default leaves
// the port out instead.
func ParsePort(s string) (int, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" || len(s) > 5 {
		return 0, fmt.Errorf("port %q is not a number in 1-65535", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %s is out of range 1-65535", s)
	}
	return n, nil
}

// Port is a port flag's value (it implements pflag.Value and flag.Value): Set accepts only
// 1-65535, so a zero Port always means "not given", never "port 0". Use it for --ssh-port and
// --ssh-bastion-port, and put int(port) in Config.Port / Endpoint.Port (0: the default applies).
type Port int

// Set parses s with ParsePort.
func (p *Port) Set(s string) error {
	n, err := ParsePort(s)
	if err != nil {
		return err
	}
	*p = Port(n)
	return nil
}

// String is the port, "0" when not given.
func (p *Port) String() string { return strconv.Itoa(int(*p)) }

// Type names the value in flag usage.
func (p *Port) Type() string { return "port" }

package ssh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Client is a connection to one host, re-established on demand after it drops. It is safe for
// concurrent use: commands, transfers and forwards share one SSH connection (one channel each).
type Client struct {
	cfg     Config
	signers []ssh.Signer
	log     *slog.Logger
	// bastionLog tags the bastion's own events with the bastion, not the target.
	bastionLog *slog.Logger

	// dialing serialises (re)connecting so concurrent callers share one new connection; a
	// channel rather than a mutex so that waiting for it respects the caller's context.
	dialing chan struct{}

	mu             sync.Mutex
	conn           *connection
	everConnected  bool
	closed         bool
	hostKey        HostKeyStatus
	bastionHostKey HostKeyStatus
	closedCh       chan struct{}
}

// connection is one established SSH connection (and the bastion connection it rides on).
type connection struct {
	client  *ssh.Client
	bastion *ssh.Client
	done    chan struct{} // closed once the connection is gone
	once    sync.Once
}

func (c *connection) close() {
	c.once.Do(func() {
		c.client.Close()
		if c.bastion != nil {
			c.bastion.Close()
		}
		close(c.done)
	})
}

func (c *connection) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// New checks cfg and loads the private keys (asking for passphrases once). It does not connect:
// the first operation (or Connect) does.
func New(cfg Config) (*Client, error) {
	if cfg.HostKeys.Mode == "" {
		cfg.HostKeys.Mode = HostKeysTrustOnFirstUse
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	signers, err := loadKeys(cfg.Auth)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: %w", cfg.target(), err)
	}
	return &Client{
		cfg:        cfg,
		signers:    signers,
		log:        cfg.Logger.With("host", cfg.Host),
		bastionLog: cfg.Logger.With("host", cfg.Bastion.Host),
		closedCh:   make(chan struct{}),
		dialing:    make(chan struct{}, 1),
	}, nil
}

// Open is New and Connect: a client connected to cfg's host, bounded by its connect timeout and
// reconnect attempts.
func Open(ctx context.Context, cfg Config) (*Client, error) {
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := c.Connect(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Target is "user@host:port".
func (c *Client) Target() string { return c.cfg.target() }

// Host is the host as configured.
func (c *Client) Host() string { return c.cfg.Host }

// User is the login user.
func (c *Client) User() string { return c.cfg.User }

// HostKey reports how the target's key was accepted on the last successful connection.
func (c *Client) HostKey() HostKeyStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hostKey
}

// BastionHostKey is like HostKey for the bastion (zero without a bastion).
func (c *Client) BastionHostKey() HostKeyStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bastionHostKey
}

// Connect establishes the connection now (one attempt, no retries), so configuration and
// reachability errors surface early. It is a no-op when already connected.
func (c *Client) Connect(ctx context.Context) error {
	_, err := c.ensure(ctx)
	return err
}

// Close closes the connection; later calls fail. Forwards stop.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	close(c.closedCh)
	if c.conn != nil {
		c.conn.close()
	}
	return nil
}

var errClientClosed = errors.New("ssh client is closed")

// current returns the live connection, or nil.
func (c *Client) current() (*connection, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("%s: %w", c.cfg.target(), errClientClosed)
	}
	if c.conn != nil && c.conn.alive() {
		return c.conn, nil
	}
	return nil, nil
}

// ensure returns a live connection: the current one, a first one (one attempt), or, when an
// earlier connection dropped, a new one dialled with bounded exponential backoff.
func (c *Client) ensure(ctx context.Context) (*connection, error) {
	if conn, err := c.current(); conn != nil || err != nil {
		return conn, err
	}
	select {
	case c.dialing <- struct{}{}:
		defer func() { <-c.dialing }()
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the connection to %s: %w", c.cfg.target(), ctx.Err())
	}
	if conn, err := c.current(); conn != nil || err != nil {
		return conn, err // someone else reconnected meanwhile
	}
	c.mu.Lock()
	reconnect := c.everConnected
	c.mu.Unlock()

	attempts := 1
	if reconnect {
		attempts = c.cfg.ReconnectAttempts
		c.log.Warn("ssh connection lost, reconnecting", "target", c.cfg.target(), "max_attempts", attempts)
	}
	start := time.Now()
	delay := 250 * time.Millisecond
	var lastErr error
	for i := 1; i <= attempts; i++ {
		conn, err := c.dial(ctx)
		if err == nil {
			c.mu.Lock()
			if c.closed {
				c.mu.Unlock()
				conn.close()
				return nil, fmt.Errorf("%s: %w", c.cfg.target(), errClientClosed)
			}
			c.conn = conn
			c.everConnected = true
			c.mu.Unlock()
			if reconnect {
				c.log.Info("ssh reconnected", "target", c.cfg.target(), "attempt", i)
			}
			return conn, nil
		}
		lastErr = err
		var ce *ConnectError
		if errors.As(err, &ce) && ce.permanent() || ctx.Err() != nil || i == attempts {
			break
		}
		c.log.Debug("ssh connect attempt failed", "target", c.cfg.target(), "attempt", i, "err", err, "retry_in", delay)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
		case <-c.closedCh:
		}
		delay = min(delay*2, c.cfg.ReconnectMaxDelay)
	}
	if reconnect {
		return nil, fmt.Errorf("reconnect to %s: gave up after %d attempts in %s: %w",
			c.cfg.target(), attempts, time.Since(start).Round(time.Millisecond), lastErr)
	}
	return nil, lastErr
}

// dial makes one connection attempt, through the bastion when one is configured.
func (c *Client) dial(parent context.Context) (*connection, error) {
	// Kept to tell the connect timeout firing from the caller's deadline, so that the error
	// names the bound that actually stopped the attempt.
	connectDeadline := time.Now().Add(c.cfg.ConnectTimeout)
	ctx, cancel := context.WithDeadline(parent, connectDeadline)
	defer cancel()
	methods, offered, closeAgent, err := authMethods(c.cfg.Auth, c.signers)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: %w", c.cfg.target(), err)
	}
	defer closeAgent()

	target := hostPort(c.cfg.Host, c.cfg.Port)
	fail := func(hop, stage, addr string, err error) error {
		kind, hint := classify(err, offered)
		switch expiredBound(parent, connectDeadline, err) {
		case boundOwn:
			te := &ConnectTimeoutError{Timeout: c.cfg.ConnectTimeout, Stage: stage, Addr: addr}
			kind, err, hint = KindTimeout, te, te.hint()
		case boundParent:
			// The caller's deadline stopped the attempt, not the connect timeout: keep
			// DeadlineExceeded in the chain so the caller can say which bound that was.
			kind, hint = KindTimeout, ""
			err = fmt.Errorf("stopped %s: %w", stageWhere(stage, addr), context.DeadlineExceeded)
		case boundCancelled:
			kind, hint = KindCancelled, ""
			err = fmt.Errorf("stopped %s: %w", stageWhere(stage, addr), context.Canceled)
		}
		ce := &ConnectError{Target: c.cfg.target(), Kind: kind, Err: err, Hint: hint, Hop: hop}
		if c.cfg.Bastion.Host != "" {
			ce.Via = c.bastionTarget()
		}
		return ce
	}

	var bastion *ssh.Client
	var raw net.Conn
	if c.cfg.Bastion.Host != "" {
		baddr := hostPort(c.cfg.Bastion.Host, c.cfg.Bastion.Port)
		braw, err := c.dialTCP(ctx, c.cfg.Bastion.Host, c.cfg.Bastion.Port)
		if err != nil {
			return nil, fail("bastion "+c.bastionTarget(), dialStage(err), baddr, err)
		}
		v := &hostKeyVerifier{policy: c.cfg.HostKeys}
		var stage string
		bastion, stage, err = handshake(ctx, braw, baddr, c.cfg.Bastion.User, methods, v)
		if err != nil {
			return nil, fail("bastion "+c.bastionTarget(), stage, baddr, err)
		}
		c.setHostKey(&c.bastionHostKey, v.result(), "bastion")
		raw, err = bastion.DialContext(ctx, "tcp", target)
		if err != nil {
			bastion.Close()
			return nil, fail("", stageBastionTCP, target, fmt.Errorf("bastion could not open a connection to %s: %w", target, err))
		}
	} else {
		raw, err = c.dialTCP(ctx, c.cfg.Host, c.cfg.Port)
		if err != nil {
			return nil, fail("", dialStage(err), target, err)
		}
	}
	v := &hostKeyVerifier{policy: c.cfg.HostKeys}
	client, stage, err := handshake(ctx, raw, target, c.cfg.User, methods, v)
	if err != nil {
		if bastion != nil {
			bastion.Close()
		}
		return nil, fail("", stage, target, err)
	}
	c.setHostKey(&c.hostKey, v.result(), "target")

	conn := &connection{client: client, bastion: bastion, done: make(chan struct{})}
	go func() {
		client.Wait()
		conn.close()
	}()
	if bastion != nil {
		go func() {
			bastion.Wait()
			conn.close()
		}()
	}
	if c.cfg.KeepaliveInterval > 0 {
		go c.keepalive(conn)
	}
	c.log.Debug("ssh connected", "target", c.cfg.target(), "host_key", v.result().Fingerprint)
	return conn, nil
}

// Which bound stopped an operation, as expiredBound tells.
const (
	boundNone      = iota // none: the operation failed on its own
	boundOwn              // the bound the operation set itself
	boundParent           // the caller's deadline
	boundCancelled        // the caller cancelled
)

// expiredBound tells which bound stopped an operation that ran under a context derived from
// parent with its own deadline (own) and failed with err. A context's timer may fire a little
// after a socket deadline taken from it has already failed the operation with a timeout, so a
// timeout error at or after a deadline counts as that deadline firing, not only ctx.Err().
func expiredBound(parent context.Context, own time.Time, err error) int {
	if errors.Is(parent.Err(), context.Canceled) {
		return boundCancelled
	}
	pd, hasParent := parent.Deadline()
	deadline, bound := own, boundOwn
	if hasParent && pd.Before(own) {
		deadline, bound = pd, boundParent
	}
	timedOut := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err)
	if !timedOut || time.Now().Before(deadline) {
		return boundNone // e.g. refused, or a timeout reported by the network or the server
	}
	return bound
}

// dialTCP opens a TCP connection to host:port, resolving a host name with the configured
// Resolver (not inside DialContext, which may be a test's or a namespace's dialer that would
// ask the machine's resolver). The addresses are tried in order, each given an equal share of
// the time left (at least 2 s), so that one black-holed address does not use it all, as
// net.Dialer does; the first address's error is returned when all fail.
func (c *Client) dialTCP(ctx context.Context, host string, port int) (net.Conn, error) {
	addrs := []string{host}
	if _, err := netip.ParseAddr(host); err != nil {
		if addrs, err = c.cfg.Resolver.LookupHost(ctx, host); err != nil {
			return nil, err
		}
		if len(addrs) == 0 {
			return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
		}
	}
	var firstErr error
	for i, a := range addrs {
		dctx, cancel := ctx, context.CancelFunc(func() {})
		if deadline, ok := ctx.Deadline(); ok && len(addrs)-i > 1 {
			share := time.Until(deadline) / time.Duration(len(addrs)-i)
			dctx, cancel = context.WithTimeout(ctx, max(share, 2*time.Second))
		}
		conn, err := c.cfg.DialContext(dctx, "tcp", hostPort(a, port))
		cancel()
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

func (c *Client) bastionTarget() string {
	return c.cfg.Bastion.User + "@" + hostPort(c.cfg.Bastion.Host, c.cfg.Bastion.Port)
}

func (c *Client) setHostKey(dst *HostKeyStatus, st HostKeyStatus, role string) {
	log := c.log
	if role == "bastion" {
		log = c.bastionLog
	}
	switch st.Source {
	case HostKeyUnchecked:
		log.Warn("host key checking is OFF: the connection could be intercepted", "role", role, "address", st.Address, "fingerprint", st.Fingerprint)
	case HostKeyNewlyPinned:
		log.Info("host key pinned on first use", "role", role, "address", st.Address, "fingerprint", st.Fingerprint)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Keep "newly pinned" visible after a reconnect re-verifies the (now pinned) key.
	if dst.Source == HostKeyNewlyPinned && st.Source == HostKeyPinned && dst.Fingerprint == st.Fingerprint {
		return
	}
	*dst = st
}

// handshake runs the SSH handshake and authentication over raw, bounded by ctx. On failure it
// also returns the stage the handshake had reached: no banner yet, key exchange (the host key
// not yet seen) or authentication.
func handshake(ctx context.Context, raw net.Conn, addr, user string, methods []ssh.AuthMethod, v *hostKeyVerifier) (*ssh.Client, string, error) {
	cfg := &ssh.ClientConfig{
		User:            user,
		Auth:            methods,
		HostKeyCallback: v.callback,
	}
	if algos := knownHostKeyAlgorithms(v.policy, addr); len(algos) > 0 {
		cfg.HostKeyAlgorithms = algos
	}
	counted := &readCounter{Conn: raw}
	stage := func() string {
		switch {
		case counted.n.Load() == 0:
			return stageBanner
		case v.result().Fingerprint == "":
			return stageKex
		}
		return stageAuth
	}
	type result struct {
		client *ssh.Client
		err    error
	}
	ch := make(chan result, 1)
	go func() {
		sc, chans, reqs, err := ssh.NewClientConn(counted, addr, cfg)
		if err != nil {
			ch <- result{err: err}
			return
		}
		ch <- result{client: ssh.NewClient(sc, chans, reqs)}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			raw.Close()
			return nil, stage(), r.err
		}
		return r.client, "", nil
	case <-ctx.Done():
		raw.Close() // unblocks the handshake goroutine
		<-ch
		return nil, stage(), fmt.Errorf("ssh handshake with %s: %w", addr, ctx.Err())
	}
}

// readCounter counts the bytes read, to tell a server that never sent its banner from one
// that stalled later in the handshake.
type readCounter struct {
	net.Conn
	n atomic.Int64
}

func (c *readCounter) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// keepalive probes the connection; after KeepaliveCountMax unanswered probes it closes it, so
// waiting operations fail and the next one reconnects.
func (c *Client) keepalive(conn *connection) {
	t := time.NewTicker(c.cfg.KeepaliveInterval)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-conn.done:
			return
		case <-t.C:
		}
		if probe(conn, c.cfg.KeepaliveInterval) {
			missed = 0
			continue
		}
		missed++
		if missed >= c.cfg.KeepaliveCountMax {
			c.log.Warn("ssh keepalive unanswered, closing connection", "target", c.cfg.target(), "missed", missed)
			conn.close()
			return
		}
	}
}

// probe sends one keepalive request and reports whether it was answered within timeout.
func probe(conn *connection, timeout time.Duration) bool {
	ch := make(chan error, 1)
	go func() {
		_, _, err := conn.client.SendRequest("keepalive@openssh.com", true, nil)
		ch <- err
	}()
	select {
	case err := <-ch:
		return err == nil
	case <-time.After(timeout):
		return false
	case <-conn.done:
		return false
	}
}

// lost reports whether conn has dropped, probing it briefly when that is not yet known. Used to
// tell "the command failed" from "the connection died under the command".
func (c *Client) lost(conn *connection) bool {
	if !conn.alive() {
		return true
	}
	if probe(conn, 3*time.Second) {
		return false
	}
	conn.close()
	return true
}

package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Forward is a running port forward. Both kinds survive a reconnect of their Client: a local
// forward keeps its listener and sends new connections over the current SSH connection; a remote
// forward re-registers its listener on the host after the connection is re-established.
type Forward struct {
	addr   string
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	err    error
	active sync.WaitGroup
	// refused counts connections the host could not make: a client retrying against a port
	// nothing listens on yet is warned about once, the rest go to the debug log.
	refused atomic.Int64
}

// Addr is the listening address: local for LocalForward, remote (on the host) for RemoteForward.
func (f *Forward) Addr() string { return f.addr }

// Close stops accepting and waits (bounded) for connections in flight to finish.
func (f *Forward) Close() error {
	f.cancel()
	<-f.done
	waited := make(chan struct{})
	go func() { f.active.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
	}
	return nil
}

// Err is why the forward stopped by itself (nil while it runs or after Close).
func (f *Forward) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Done is closed when the forward stops.
func (f *Forward) Done() <-chan struct{} { return f.done }

func (f *Forward) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// LocalForward listens on localAddr (e.g. "127.0.0.1:0") and forwards each connection to
// remoteAddr as seen from the host (e.g. "127.0.0.1:6443" for the API server on a master).
func (c *Client) LocalForward(ctx context.Context, localAddr, remoteAddr string) (*Forward, error) {
	if _, err := c.ensure(ctx); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", localAddr)
	if err != nil {
		return nil, fmt.Errorf("local forward %s -> %s on %s: listen: %w", localAddr, remoteAddr, c.cfg.target(), err)
	}
	fctx, cancel := context.WithCancel(context.Background())
	f := &Forward{addr: ln.Addr().String(), cancel: cancel, done: make(chan struct{})}
	go func() {
		select {
		case <-fctx.Done():
		case <-c.closedCh:
		}
		ln.Close()
	}()
	go func() {
		defer close(f.done)
		defer cancel()
		for {
			local, err := ln.Accept()
			if err != nil {
				if fctx.Err() == nil {
					f.setErr(err)
				}
				return
			}
			f.active.Add(1)
			go func() {
				defer f.active.Done()
				c.forwardLocalConn(fctx, f, local, remoteAddr)
			}()
		}
	}()
	c.log.Debug("local forward started", "listen", f.addr, "remote", remoteAddr)
	return f, nil
}

func (c *Client) forwardLocalConn(ctx context.Context, f *Forward, local net.Conn, remoteAddr string) {
	defer local.Close()
	dialCtx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout*time.Duration(c.cfg.ReconnectAttempts+1))
	defer cancel()
	var remote net.Conn
	for attempt := 0; ; attempt++ {
		conn, err := c.ensure(dialCtx)
		if err != nil {
			c.log.Warn("local forward: no ssh connection", "remote", remoteAddr, "err", err)
			return
		}
		remote, err = conn.client.DialContext(dialCtx, "tcp", remoteAddr)
		if err == nil {
			break
		}
		if attempt > 0 || !c.lost(conn) {
			if f.refused.Add(1) == 1 {
				c.log.Warn("local forward: host could not connect (further refusals of this forward are in the debug log)", "remote", remoteAddr, "err", err)
			} else {
				c.log.Debug("local forward: host could not connect", "remote", remoteAddr, "err", err)
			}
			return
		}
	}
	defer remote.Close()
	pipe(ctx, local, remote)
}

// RemoteForward asks the host to listen on remoteAddr (e.g. "127.0.0.1:0"; a port of 0 is
// chosen by the host and kept across reconnects) and forwards each connection to localAddr on
// this machine (e.g. the packages proxy).
func (c *Client) RemoteForward(ctx context.Context, remoteAddr, localAddr string) (*Forward, error) {
	conn, err := c.ensure(ctx)
	if err != nil {
		return nil, err
	}
	ln, err := conn.client.Listen("tcp", remoteAddr)
	if err != nil {
		return nil, fmt.Errorf("remote forward %s on %s -> %s: the host refused to listen: %w; check AllowTcpForwarding in its sshd_config and that the port is free",
			remoteAddr, c.cfg.target(), localAddr, err)
	}
	// Keep the port the host picked so a re-registration after reconnect uses the same one.
	host, _, _ := net.SplitHostPort(remoteAddr)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if p, _ := strconv.Atoi(port); p != 0 {
		remoteAddr = net.JoinHostPort(host, port)
	}
	fctx, cancel := context.WithCancel(context.Background())
	f := &Forward{addr: remoteAddr, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		defer cancel()
		for {
			c.serveRemote(fctx, f, ln, localAddr)
			ln.Close()
			if fctx.Err() != nil {
				return
			}
			// The connection dropped: reconnect (bounded backoff inside ensure) and listen again.
			c.log.Warn("remote forward interrupted, re-establishing", "remote", remoteAddr)
			ln, err = c.relisten(fctx, remoteAddr)
			if err != nil {
				if fctx.Err() == nil {
					f.setErr(fmt.Errorf("remote forward %s on %s stopped: %w", remoteAddr, c.cfg.target(), err))
					c.log.Error("remote forward stopped", "remote", remoteAddr, "err", err)
				}
				return
			}
			c.log.Info("remote forward re-established", "remote", remoteAddr)
		}
	}()
	go func() {
		select {
		case <-fctx.Done():
		case <-c.closedCh:
			cancel()
		}
	}()
	c.log.Debug("remote forward started", "remote", remoteAddr, "local", localAddr)
	return f, nil
}

func (c *Client) relisten(ctx context.Context, remoteAddr string) (net.Listener, error) {
	for attempt := 0; ; attempt++ {
		conn, err := c.ensure(ctx)
		if err != nil {
			return nil, err
		}
		ln, err := conn.client.Listen("tcp", remoteAddr)
		if err == nil {
			return ln, nil
		}
		// Right after a drop the host may still hold the old listener for a moment.
		if attempt >= 10 || ctx.Err() != nil {
			return nil, fmt.Errorf("listen on %s again: %w", remoteAddr, err)
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// serveRemote accepts until the listener fails (connection lost) or ctx ends.
func (c *Client) serveRemote(ctx context.Context, f *Forward, ln net.Listener, localAddr string) {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			ln.Close()
		case <-stop:
		}
	}()
	for {
		remote, err := ln.Accept()
		if err != nil {
			return
		}
		f.active.Add(1)
		go func() {
			defer f.active.Done()
			defer remote.Close()
			var d net.Dialer
			dctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
			local, err := d.DialContext(dctx, "tcp", localAddr)
			cancel()
			if err != nil {
				c.log.Warn("remote forward: local target unreachable", "local", localAddr, "err", err)
				return
			}
			defer local.Close()
			pipe(ctx, remote, local)
		}()
	}
}

// pipe copies both ways until both directions end or ctx is cancelled.
func pipe(ctx context.Context, a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && (err == nil || errors.Is(err, io.EOF)) {
			cw.CloseWrite() //nolint:errcheck
		} else {
			dst.Close()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	for i := 0; i < 2; i++ {
		select {
		case <-done:
		case <-ctx.Done():
			a.Close()
			b.Close()
			return
		}
	}
}

// DialContext opens a TCP connection from the host to addr, resolved and routed as the host
// sees it, through the SSH connection (an SSH "direct-tcpip" channel, what LocalForward uses
// per connection). It lets a caller talk to a service from the host's point of view, e.g. check
// that a registry is reachable from a master, without running anything on the host.
func (c *Client) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.ensure(ctx)
	if err != nil {
		return nil, err
	}
	return conn.client.DialContext(ctx, network, addr)
}

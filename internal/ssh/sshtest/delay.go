package sshtest

import (
	"context"
	"net"
	"sync"
	"time"
)

// DialContextWithDelay is like DialContext, but every connection behaves as if the link to the
// host had the given one-way delay: connecting takes one round trip (2*delay), the server can
// send nothing that arrives before the client's handshake would have reached it (4*delay after
// the dial started: SYN, SYN-ACK, ACK, then the server's first bytes), and every byte written
// or read afterwards arrives delay later. Bandwidth is not limited.
//
// The delay is emulated in the dialing process because the kernels these tests run on may lack
// sch_netem (`tc qdisc ... netem delay` fails with "Specified qdisc kind is unknown"); it costs
// two goroutines and one timer wait per chunk of data, which is small next to SSH's own work.
func (l *Lab) DialContextWithDelay(delay time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if delay <= 0 {
		return l.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		start := time.Now()
		conn, err := l.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if err := sleepCtx(ctx, time.Until(start.Add(2*delay))); err != nil {
			conn.Close()
			return nil, err
		}
		return newDelayedConn(conn, delay, start.Add(4*delay)), nil
	}
}

// delayedConn delays both directions of a connection by a fixed time.
type delayedConn struct {
	net.Conn
	delay time.Duration

	in      chan chunk // read from the network, stamped with when it "arrives"
	out     chan chunk // written by the caller, stamped with when it "arrives" at the peer
	pending []byte     // rest of the chunk being read
	readErr error

	closeOnce sync.Once
	closed    chan struct{}
	readMu    sync.Mutex

	writeMu  sync.Mutex
	writeErr error
}

type chunk struct {
	data  []byte
	due   time.Time
	err   error
	close bool // closes the connection once delivered
}

func newDelayedConn(conn net.Conn, delay time.Duration, firstArrival time.Time) *delayedConn {
	c := &delayedConn{
		Conn:   conn,
		delay:  delay,
		in:     make(chan chunk, 256),
		out:    make(chan chunk, 256),
		closed: make(chan struct{}),
	}
	go c.receive(firstArrival)
	go c.send()
	return c
}

// receive reads from the network and queues what it read with its arrival time.
func (c *delayedConn) receive(notBefore time.Time) {
	defer close(c.in)
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Conn.Read(buf)
		due := time.Now().Add(c.delay)
		if due.Before(notBefore) {
			due = notBefore
		}
		// Queue a copy of what was read, not the read buffer: SSH packets are small, and a
		// 32 KiB buffer per queued read would inflate the dialling process's memory.
		data := append([]byte(nil), buf[:n]...)
		select {
		case c.in <- chunk{data: data, due: due, err: err}:
		case <-c.closed:
			return
		}
		if err != nil {
			return
		}
	}
}

// send delivers queued writes when they are due, and closes the connection after the last one.
func (c *delayedConn) send() {
	for ch := range c.out {
		sleepUntil(ch.due, nil) //nolint:errcheck // cannot be stopped
		if ch.close {
			c.Conn.Close()
			return
		}
		if _, err := c.Conn.Write(ch.data); err != nil {
			c.writeMu.Lock()
			c.writeErr = err
			c.writeMu.Unlock()
		}
	}
}

func (c *delayedConn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for len(c.pending) == 0 {
		if c.readErr != nil {
			return 0, c.readErr
		}
		var ch chunk
		var ok bool
		select {
		case ch, ok = <-c.in:
		case <-c.closed:
			return 0, net.ErrClosed
		}
		if !ok {
			return 0, net.ErrClosed
		}
		if err := sleepUntil(ch.due, c.closed); err != nil {
			return 0, err
		}
		c.pending, c.readErr = ch.data, ch.err
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// Write queues p for delivery after the delay (like a socket's send buffer) and returns at once.
func (c *delayedConn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	err := c.writeErr
	c.writeMu.Unlock()
	if err != nil {
		return 0, err
	}
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	data := append([]byte(nil), p...)
	select {
	case c.out <- chunk{data: data, due: time.Now().Add(c.delay)}:
		return len(p), nil
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

// Close makes reads and writes fail at once; what was written is still delivered, then the
// underlying connection is closed (as a FIN would follow the data). A peer that stops reading
// cannot hold the connection open: it is closed regardless 5 s after it is due.
func (c *delayedConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		due := time.Now().Add(c.delay)
		time.AfterFunc(c.delay+5*time.Second, func() { c.Conn.Close() })
		go func() { c.out <- chunk{close: true, due: due} }() // c.out is never closed: no send can panic
	})
	return nil
}

// sleepUntil waits until t, or until stop is closed (net.ErrClosed).
func sleepUntil(t time.Time, stop <-chan struct{}) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-stop:
		return net.ErrClosed
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

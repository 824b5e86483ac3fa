package sshtest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// echoPair returns a delayed client conn to a loopback echo server.
func echoPair(t *testing.T, delay time.Duration) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }() //nolint:errcheck
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := newDelayedConn(raw, delay, time.Now())
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDelayedConnRoundTripTakesTwoDelays(t *testing.T) {
	const delay = 30 * time.Millisecond
	c := echoPair(t, delay)
	for i := 0; i < 3; i++ {
		start := time.Now()
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		rtt := time.Since(start)
		if rtt < 2*delay {
			t.Fatalf("round trip %d took %s, want at least 2 x %s", i, rtt, delay)
		}
		if string(buf) != "ping" {
			t.Fatalf("echo = %q", buf)
		}
	}
}

func TestDelayedConnKeepsDataAndOrder(t *testing.T) {
	c := echoPair(t, 2*time.Millisecond)
	data := make([]byte, 1<<20)
	rand.Read(data) //nolint:errcheck
	go func() {
		for off := 0; off < len(data); off += 7000 { // writes of odd sizes
			end := min(off+7000, len(data))
			if _, err := c.Write(data[off:end]); err != nil {
				return
			}
		}
	}()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("echoed data differs from what was written")
	}
}

func TestDelayedConnCloseUnblocksRead(t *testing.T) {
	c := echoPair(t, time.Second)
	errCh := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		errCh <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-errCh:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second): // nothing was written: without Close it blocks forever
		t.Fatal("Read still blocked 5s after Close")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close = %v, want net.ErrClosed", err)
	}
}

package ssh_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	dssh "github.com/dhctl-dev/dhctl/internal/ssh"
)

// silentServer accepts TCP connections on loopback and writes greeting (maybe nothing) to each,
// then never another byte: a port where something other than sshd listens, or a stuck sshd.
func silentServer(t *testing.T, greeting string) (string, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.Write([]byte(greeting)) //nolint:errcheck
				<-done
			}()
		}
	}()
	a := ln.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

func silentConfig(host string, port int, connectTimeout time.Duration) dssh.Config {
	return dssh.Config{
		Host: host, Port: port, User: "root",
		Auth:           dssh.Auth{Password: "not-used"},
		HostKeys:       dssh.HostKeyPolicy{Mode: dssh.HostKeysInsecureIgnore},
		ConnectTimeout: connectTimeout,
	}
}

// A connection that never speaks SSH gives up after the connect timeout and says so: that bound,
// its value, the stage, the flag that sets it; not the (much longer) per-host bound around it.
func TestConnectTimeoutNamesTheBoundThatFired(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, greeting, stage, says string
	}{
		{"no-banner", "", "wait for the SSH banner", "the TCP connection was accepted but the server sent nothing"},
		{"banner-then-silence", "SSH-2.0-OpenSSH_9.6\r\n", "SSH key exchange", "during the SSH key exchange with"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			host, port := silentServer(t, tc.greeting)
			c := newClient(t, silentConfig(host, port, 400*time.Millisecond))
			start := time.Now()
			res := dssh.Fanout(context.Background(), []*dssh.Client{c}, dssh.FanoutOptions{PerHostTimeout: time.Minute},
				func(ctx context.Context, c *dssh.Client) (struct{}, error) { return struct{}{}, c.Connect(ctx) })
			err, elapsed := res[0].Err, time.Since(start)
			t.Logf("after %s: %v", elapsed, err)
			var ce *dssh.ConnectError
			var te *dssh.ConnectTimeoutError
			if !errors.As(err, &ce) || ce.Kind != dssh.KindTimeout || !errors.As(err, &te) ||
				te.Timeout != 400*time.Millisecond || te.Stage != tc.stage {
				t.Fatalf("want a connect timeout of 400ms at stage %q, got %v", tc.stage, err)
			}
			for _, want := range []string{"connect timeout (400ms) expired", tc.says, "--ssh-connect-timeout", "root@" + host} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
			if strings.Contains(err.Error(), "did not finish within") || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("the per-host bound did not fire, but the error says or implies it did: %v", err)
			}
			if elapsed > 10*time.Second {
				t.Errorf("took %s with a 400ms connect timeout", elapsed)
			}
		})
	}
}

// The other way round: when the per-host bound (or the caller's deadline) is the shorter one,
// the error names it and gives no advice about the connect timeout.
func TestOuterDeadlineIsNotBlamedOnTheConnectTimeout(t *testing.T) {
	t.Parallel()
	host, port := silentServer(t, "")
	c := newClient(t, silentConfig(host, port, time.Minute))
	res := dssh.Fanout(context.Background(), []*dssh.Client{c}, dssh.FanoutOptions{PerHostTimeout: 300 * time.Millisecond},
		func(ctx context.Context, c *dssh.Client) (struct{}, error) { return struct{}{}, c.Connect(ctx) })
	err := res[0].Err
	var te *dssh.ConnectTimeoutError
	if err == nil || errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "did not finish within 300ms (the per-host timeout)") ||
		strings.Contains(err.Error(), "connect timeout") {
		t.Fatalf("want the per-host timeout named (and not the connect timeout), got %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	err = newClient(t, silentConfig(host, port, time.Minute)).Connect(ctx)
	var ce *dssh.ConnectError
	if !errors.As(err, &ce) || ce.Kind != dssh.KindCancelled || !errors.Is(err, context.Canceled) ||
		strings.Contains(err.Error(), "connect timeout") {
		t.Fatalf("cancelled: want a cancellation error without connect-timeout advice, got %v", err)
	}
}

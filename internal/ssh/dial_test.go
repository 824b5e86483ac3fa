package ssh_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/internal/netns"
	"github.com/dhctl-dev/dhctl/internal/ssh/sshtest"
)

// DialContext reaches a listener on the target's loopback (only the target can), and a port
// nobody listens on fails with the host's answer instead of hanging.
func TestDialContextFromTheHost(t *testing.T) {
	t.Parallel()
	lab := sshtest.NewLab(t, 1, sshtest.Options{})
	h := lab.Hosts[0]
	c := newClient(t, rootConfig(t, lab, h, &logBuffer{}))

	ln, err := netns.Listen(h.NetNS, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		io.WriteString(conn, "hello from the target")
		conn.Close()
	}()

	conn, err := c.DialContext(ctxT(t, 10*time.Second), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(conn)
	conn.Close()
	if err != nil || string(got) != "hello from the target" {
		t.Fatalf("read %q, %v", got, err)
	}

	// A closed port on the target's loopback: sshd reports the refusal.
	free, err := netns.Listen(h.NetNS, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	if _, err := c.DialContext(ctxT(t, 10*time.Second), "tcp", addr); err == nil || !strings.Contains(strings.ToLower(err.Error()), "refused") {
		t.Fatalf("dial to a closed port %s: err %v, want connection refused", addr, err)
	}
}

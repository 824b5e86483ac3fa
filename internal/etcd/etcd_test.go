package etcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/artifacts"
)

// member is a real etcd process of a test cluster on a loopback address of its own.
type member struct {
	name               string
	clientURL, peerURL string
	cmd                *exec.Cmd
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// startCluster starts a three-member etcd cluster; every process is killed when the test ends.
func startCluster(t *testing.T) []*member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	bins, err := artifacts.Build(ctx, artifacts.Options{Logf: t.Logf}, artifacts.Etcd)
	if err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 6)
	var ms []*member
	var initial []string
	for i := range 3 {
		// A loopback address of its own, as each master has its own address.
		ip := fmt.Sprintf("127.0.0.%d", i+1)
		m := &member{name: fmt.Sprintf("m%d", i), clientURL: fmt.Sprintf("http://%s:%d", ip, ports[2*i]), peerURL: fmt.Sprintf("http://%s:%d", ip, ports[2*i+1])}
		ms = append(ms, m)
		initial = append(initial, m.name+"="+m.peerURL)
	}
	dir := t.TempDir()
	for _, m := range ms {
		m.cmd = exec.Command(bins["etcd"], "--name="+m.name, "--data-dir="+filepath.Join(dir, m.name),
			"--listen-client-urls="+m.clientURL, "--advertise-client-urls="+m.clientURL,
			"--listen-peer-urls="+m.peerURL, "--initial-advertise-peer-urls="+m.peerURL,
			"--initial-cluster="+strings.Join(initial, ","), "--initial-cluster-state=new", "--log-level=error")
		m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := m.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.stop() })
	}
	return ms
}

func (m *member) stop() {
	if m.cmd.ProcessState == nil {
		_ = m.cmd.Process.Kill()
		_ = m.cmd.Wait()
	}
}

func TestMembersHealthAndRemoval(t *testing.T) {
	ms := startCluster(t)
	c, err := New(ms[0].clientURL, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	var members []Member
	deadline := time.Now().Add(time.Minute)
	for {
		members, err = c.CheckHealthy(ctx)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("a new cluster is not healthy: %v", err)
	}
	if len(members) != 3 || members[2].Name != "m2" || members[2].Host() != "127.0.0.3" || members[2].ID == 0 {
		t.Fatalf("members %+v", members)
	}

	// A member down: named, with why.
	ms[2].stop()
	var unhealthy *UnhealthyError
	deadline = time.Now().Add(30 * time.Second)
	for {
		// Until a leader is elected again (m2 may have led), the others answer 503 too.
		_, err = c.CheckHealthy(ctx)
		if !errors.As(err, &unhealthy) || len(unhealthy.Members) == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !errors.As(err, &unhealthy) || len(unhealthy.Members) != 1 || !strings.HasPrefix(unhealthy.Members[0], "m2 at 127.0.0.3: ") {
		t.Fatalf("with m2 down: %v", err)
	}
	// The others checked, the down member left out (it is the one to remove): healthy; another
	// left out instead: still not.
	if _, err := c.CheckHealthyExcept(ctx, "127.0.0.3"); err != nil {
		t.Errorf("with m2 down and left out: %v", err)
	}
	if _, err := c.CheckHealthyExcept(ctx, "127.0.0.2"); !errors.As(err, &unhealthy) || !strings.HasPrefix(unhealthy.Members[0], "m2 at 127.0.0.3: ") {
		t.Errorf("with m2 down and m1 left out: %v", err)
	}

	// Removed, the cluster of two is healthy again; removing it twice is no error.
	if err := c.RemoveMember(ctx, members[2].ID); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveMember(ctx, members[2].ID); err != nil {
		t.Errorf("removing a removed member: %v", err)
	}
	left, err := c.CheckHealthy(ctx)
	if err != nil || len(left) != 2 {
		t.Fatalf("after the removal: %v, %+v", err, left)
	}
}

func TestNewRefusesBadCredentials(t *testing.T) {
	if _, err := New("https://x:2379", &Credentials{CA: []byte("no"), Cert: nil, Key: nil}, nil); err == nil || !strings.Contains(err.Error(), "CA certificate is not PEM") {
		t.Errorf("bad CA: %v", err)
	}
}

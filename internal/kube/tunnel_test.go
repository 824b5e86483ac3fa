package kube

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dhctl-dev/dhctl/internal/kubetest"
	"github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/internal/ssh/sshtest"
)

// The API server runs in a host's network namespace, listening on an address this process cannot
// reach; ConnectSSH reads the admin kubeconfig over SSH (real sshd), tunnels to the server it
// names, and keeps working after the SSH connection is killed.
func TestConnectSSHThroughTunnel(t *testing.T) {
	t.Parallel()
	lab := sshtest.NewLab(t, 1, sshtest.Options{})
	h := lab.Hosts[0]
	cluster := kubetest.Start(t, kubetest.Options{NetNS: h.NetNS, Address: h.Addr, DialContext: lab.DialContext})

	sshClient, err := ssh.New(ssh.Config{
		Host: h.Addr, Port: h.Port, User: "root",
		Auth:              ssh.Auth{Keys: []ssh.KeyFile{{Path: lab.RootKey}}},
		HostKeys:          ssh.HostKeyPolicy{StateDir: filepath.Join(t.TempDir(), "state")},
		ConnectTimeout:    5 * time.Second,
		ReconnectAttempts: 3,
		DialContext:       lab.DialContext,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sshClient.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	client, err := ConnectSSH(ctx, SSHOptions{SSH: sshClient, AdminKubeconfig: cluster.Kubeconfig})
	if err != nil {
		t.Fatalf("ConnectSSH: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	if got := client.Host(); got[:len("https://127.0.0.1:")] != "https://127.0.0.1:" {
		t.Errorf("client host %q is not the local end of a tunnel", got)
	}
	list := func(when string) {
		t.Helper()
		if _, err := client.Typed().CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
			t.Fatalf("%s: reading a namespace through the tunnel: %v", when, err)
		}
	}
	list("first request")

	// Drop the SSH connection under the tunnel: the next requests go over a new one.
	if n := h.KillConnections(); n == 0 {
		t.Fatal("no SSH connection to kill: the test would prove nothing")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := client.Typed().CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
		if err == nil {
			break
		}
		// The request in flight when the connection died may fail; a later one must not.
		if time.Now().After(deadline) {
			t.Fatalf("the tunnel did not recover after the SSH connection was killed: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	list("after reconnect")
}

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

// BenchmarkGetThroughTunnel: one GET of a namespace through ConnectSSH's tunnel (real sshd),
// against the same request straight to the API server (dialled inside the lab namespace).
func BenchmarkGetThroughTunnel(b *testing.B) {
	lab := sshtest.NewLab(b, 1, sshtest.Options{})
	h := lab.Hosts[0]
	cluster := kubetest.Start(b, kubetest.Options{NetNS: h.NetNS, Address: h.Addr, DialContext: lab.DialContext})
	sshClient, err := ssh.New(ssh.Config{
		Host: h.Addr, Port: h.Port, User: "root",
		Auth:           ssh.Auth{Keys: []ssh.KeyFile{{Path: lab.RootKey}}},
		HostKeys:       ssh.HostKeyPolicy{StateDir: filepath.Join(b.TempDir(), "state")},
		ConnectTimeout: 5 * time.Second,
		DialContext:    lab.DialContext,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sshClient.Close() })
	ctx := context.Background()
	tunnelled, err := ConnectSSH(ctx, SSHOptions{SSH: sshClient, AdminKubeconfig: cluster.Kubeconfig})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tunnelled.Close() })
	direct, err := New(cluster.Config)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		client *Client
	}{{"tunnel", tunnelled}, {"direct", direct}} {
		b.Run(c.name, func(b *testing.B) {
			var before int64
			if c.client.tunnel != nil {
				before = c.client.tunnel.dials.Load()
				defer func() { b.ReportMetric(float64(c.client.tunnel.dials.Load()-before), "dials") }()
			}
			for i := 0; i < b.N; i++ {
				if _, err := c.client.Typed().CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package kube

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/dhctl-dev/dhctl/internal/ssh"
)

// DefaultAdminKubeconfig is where kubeadm writes the admin kubeconfig on a master.
const DefaultAdminKubeconfig = "/etc/kubernetes/admin.conf"

// SSHOptions say how to reach the API server through a master.
type SSHOptions struct {
	// SSH is the connection to the first master.
	SSH *ssh.Client
	// AdminKubeconfig is the path of the admin kubeconfig on the master; "" means
	// DefaultAdminKubeconfig. It is read with sudo and never written locally.
	AdminKubeconfig string
	// APIServer is the API server's address as seen from the master; "" means the server of the
	// admin kubeconfig (e.g. 10.0.0.10:6443).
	APIServer string
	// Log receives tunnel events; nil discards them.
	Log *slog.Logger
}

// ConnectSSH fetches the admin kubeconfig from the master over SSH, opens a local port forward
// 127.0.0.1:<random> -> APIServer through the SSH connection and returns a client using it. The
// kubeconfig's server is replaced by the tunnel, while certificates are still verified against
// the original server name. When the forward stops (the SSH connection died and could not be
// revived), the next request opens a new one. Close the client to close the tunnel.
func ConnectSSH(ctx context.Context, opts SSHOptions) (*Client, error) {
	if opts.SSH == nil {
		return nil, fmt.Errorf("kube: ConnectSSH needs an SSH client")
	}
	path := opts.AdminKubeconfig
	if path == "" {
		path = DefaultAdminKubeconfig
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	data, err := opts.SSH.Output(ctx, ssh.Command{Cmd: "cat -- " + path, Sudo: true, LogAs: "read " + path})
	if err != nil {
		return nil, fmt.Errorf("reading the admin kubeconfig %s on %s: %w (has the control plane been bootstrapped there?)", path, opts.SSH.Host(), err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig([]byte(data))
	if err != nil {
		return nil, fmt.Errorf("the admin kubeconfig %s on %s: %w", path, opts.SSH.Host(), err)
	}
	server, err := url.Parse(cfg.Host)
	if err != nil || server.Host == "" {
		return nil, fmt.Errorf("the admin kubeconfig %s on %s: server %q is not a URL", path, opts.SSH.Host(), cfg.Host)
	}
	remote := opts.APIServer
	if remote == "" {
		remote = server.Host
		if server.Port() == "" {
			remote = net.JoinHostPort(server.Hostname(), "443")
		}
	}
	t := &tunnel{ssh: opts.SSH, remote: remote, log: log}
	addr, err := t.current(ctx)
	if err != nil {
		return nil, err
	}
	// Verify the serving certificate against the name the kubeconfig used, not 127.0.0.1.
	if cfg.TLSClientConfig.ServerName == "" {
		cfg.TLSClientConfig.ServerName = server.Hostname()
	}
	cfg.Host = "https://" + addr
	// Every connection goes to the current forward, whatever the URL says: after a new forward
	// (new port), clients built from this config keep working.
	cfg.Dial = t.dial
	c, err := New(cfg)
	if err != nil {
		t.Close()
		return nil, err
	}
	c.closer = t.Close
	c.tunnel = t
	log.Debug("API server reachable through SSH", "master", opts.SSH.Host(), "remote", remote, "local", addr)
	return c, nil
}

// tunnel is a local forward that is reopened when it stops.
type tunnel struct {
	ssh    *ssh.Client
	remote string
	log    *slog.Logger

	mu    sync.Mutex
	fwd   *ssh.Forward
	dials atomic.Int64 // connections opened through the tunnel (benchmarks)
}

// current returns the address of a running forward, opening one if there is none.
func (t *tunnel) current(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fwd != nil {
		select {
		case <-t.fwd.Done():
			t.log.Warn("SSH tunnel to the API server stopped; reopening it", "remote", t.remote, "err", t.fwd.Err())
			t.fwd = nil
		default:
			return t.fwd.Addr(), nil
		}
	}
	fwd, err := t.ssh.LocalForward(ctx, "127.0.0.1:0", t.remote)
	if err != nil {
		return "", fmt.Errorf("SSH tunnel to the API server %s through %s: %w", t.remote, t.ssh.Host(), err)
	}
	t.fwd = fwd
	return fwd.Addr(), nil
}

func (t *tunnel) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	addr, err := t.current(ctx)
	if err != nil {
		return nil, err
	}
	t.dials.Add(1)
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// Close stops the forward.
func (t *tunnel) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fwd != nil {
		err := t.fwd.Close()
		t.fwd = nil
		return err
	}
	return nil
}

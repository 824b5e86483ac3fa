// Package etcd checks and changes the etcd cluster of a kubeadm control plane: its members, their
// health, a member's removal. It speaks etcd's JSON gateway (/v3/cluster/member/...) and /health
// over HTTPS with the API server's etcd client certificate, dialled through SSH to a
// control-plane node: no etcd client library and nothing installed on the nodes (the etcd image
// need not carry etcdctl).
package etcd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Where kubeadm keeps what a client of the control plane's etcd needs, on every control-plane
// node.
const (
	CAFile   = "/etc/kubernetes/pki/etcd/ca.crt"
	CertFile = "/etc/kubernetes/pki/apiserver-etcd-client.crt"
	KeyFile  = "/etc/kubernetes/pki/apiserver-etcd-client.key" // secret
	// ClientPort is etcd's client port on a control-plane node.
	ClientPort = 2379
)

// callTimeout bounds each request.
const callTimeout = 15 * time.Second

// Credentials are the client certificate and the CA that signs etcd's serving certificates.
// Key is secret.
type Credentials struct {
	CA, Cert, Key []byte
}

// Client talks to one etcd cluster.
type Client struct {
	endpoint string // a member's client URL the requests go to
	http     *http.Client
}

// New returns a client of the cluster that endpoint (a client URL, https://host:port) belongs
// to. dial opens connections (e.g. through SSH); nil dials directly. Without credentials
// (nil) it speaks plain HTTP, as a test's etcd does.
func New(endpoint string, creds *Credentials, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*Client, error) {
	tr := &http.Transport{DialContext: dial, ResponseHeaderTimeout: callTimeout, MaxIdleConnsPerHost: 2}
	if creds != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(creds.CA) {
			return nil, errors.New("etcd: the CA certificate is not PEM")
		}
		pair, err := tls.X509KeyPair(creds.Cert, creds.Key)
		if err != nil {
			return nil, errors.New("etcd: the client certificate and key do not form a pair")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	return &Client{endpoint: strings.TrimSuffix(endpoint, "/"), http: &http.Client{Transport: tr}}, nil
}

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Member is one member of the cluster.
type Member struct {
	ID         uint64   `json:"-"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner"`
}

// Host is the host of the member's first peer URL (its node's address).
func (m Member) Host() string {
	for _, u := range m.PeerURLs {
		if p, err := url.Parse(u); err == nil {
			return p.Hostname()
		}
	}
	return ""
}

// String names a member for people.
func (m Member) String() string {
	s := m.Name
	if s == "" {
		s = "(not started)"
	}
	return s + " at " + m.Host()
}

// wireMember is a member as the gateway encodes it: 64-bit IDs as decimal strings.
type wireMember struct {
	Member
	ID string `json:"ID"`
}

// Members lists the cluster's members, sorted by name.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var resp struct {
		Members []wireMember `json:"members"`
	}
	if err := c.post(ctx, "/v3/cluster/member/list", map[string]any{}, &resp); err != nil {
		return nil, fmt.Errorf("listing the etcd members: %w", err)
	}
	out := make([]Member, 0, len(resp.Members))
	for _, w := range resp.Members {
		id, err := strconv.ParseUint(w.ID, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("listing the etcd members: member %q has ID %q", w.Name, w.ID)
		}
		m := w.Member
		m.ID = id
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// RemoveMember removes the member with id. Removing one already gone is no error.
func (c *Client) RemoveMember(ctx context.Context, id uint64) error {
	err := c.post(ctx, "/v3/cluster/member/remove", map[string]any{"ID": strconv.FormatUint(id, 10)}, nil)
	if err != nil && strings.Contains(err.Error(), "member not found") {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing etcd member %x: %w", id, err)
	}
	return nil
}

// Healthy reports whether the member answers /health with a healthy cluster (it is connected
// to a leader and serves); why says what it answered otherwise.
func (c *Client) Healthy(ctx context.Context, m Member) (ok bool, why string) {
	if len(m.ClientURLs) == 0 {
		return false, "it has no client URL (never started)"
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(m.ClientURLs[0], "/")+"/health", nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var h struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(body, &h); err != nil || resp.StatusCode != http.StatusOK || h.Health != "true" {
		return false, fmt.Sprintf("/health answered %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return true, ""
}

// UnhealthyError names the members that are not healthy.
type UnhealthyError struct {
	Members []string // "name at host: why"
}

func (e *UnhealthyError) Error() string {
	return "etcd is not healthy: " + strings.Join(e.Members, "; ")
}

// CheckHealthy lists the members and checks each: every member started, none a learner, all
// healthy. The members are returned either way.
func (c *Client) CheckHealthy(ctx context.Context) ([]Member, error) {
	return c.CheckHealthyExcept(ctx)
}

// CheckHealthyExcept is CheckHealthy for every member but those at hosts (members about to be
// removed: a lost machine's member is unhealthy, and its health is not what removing it risks).
func (c *Client) CheckHealthyExcept(ctx context.Context, hosts ...string) ([]Member, error) {
	members, err := c.Members(ctx)
	if err != nil {
		return nil, err
	}
	var bad []string
	for _, m := range members {
		if slices.Contains(hosts, m.Host()) {
			continue
		}
		if m.IsLearner {
			bad = append(bad, m.String()+": still a learner (not yet promoted to a voting member)")
			continue
		}
		if ok, why := c.Healthy(ctx, m); !ok {
			bad = append(bad, m.String()+": "+why)
		}
	}
	if len(bad) > 0 {
		return members, &UnhealthyError{Members: bad}
	}
	return members, nil
}

func (c *Client) post(ctx context.Context, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			return errors.New(e.Message)
		}
		return fmt.Errorf("%s answered %d", path, resp.StatusCode)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// SSHDialer is what ThroughSSH needs of an SSH client to a control-plane node: reading root's
// files and dialling from there.
type SSHDialer interface {
	Download(ctx context.Context, remotePath string, w io.Writer, sudo bool) error
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// ThroughSSH is a client of the etcd cluster of the control-plane node c is connected to (at
// nodeIP), with the API server's etcd client certificate read there; every connection, to
// that member and to the others, goes through c.
func ThroughSSH(ctx context.Context, c SSHDialer, nodeIP string) (*Client, error) {
	var creds Credentials
	for _, f := range []struct {
		path string
		dst  *[]byte
	}{{CAFile, &creds.CA}, {CertFile, &creds.Cert}, {KeyFile, &creds.Key}} {
		var b bytes.Buffer
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		err := c.Download(cctx, f.path, &b, true)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("reading %s on the control-plane node %s: %w", f.path, nodeIP, err)
		}
		*f.dst = b.Bytes()
	}
	return New("https://"+net.JoinHostPort(nodeIP, strconv.Itoa(ClientPort)), &creds, c.DialContext)
}

package rig

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/dhctl-dev/dhctl/internal/registrytest"
)

// registryPort is where the registry listens on the bridge address.
const registryPort = 5000

// registryUser is the basic-auth user of every rig registry.
const registryUser = "rig"

// Registry is an OCI registry (Debian's docker-registry, i.e. distribution)
// running inside the rig's namespace on the bridge address, with TLS from a CA
// the rig made and basic auth, as air-gapped users run theirs.
type Registry struct {
	// Host is address:port, the registry part of image references.
	Host string
	// User and Password are the basic-auth credentials.
	User, Password string
	// CACert is the PEM certificate of the CA that signed the registry's
	// certificate; CAFile holds the same, alone in its directory (usable as
	// skopeo's --cert-dir or containerd's certs.d entry).
	CACert []byte
	CAFile string

	rig  *Rig
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// StartRegistry starts the rig's registry and waits until it answers. It
// stops at Close.
func (r *Rig) StartRegistry(ctx context.Context) (*Registry, error) {
	dir := filepath.Join(r.dir, "registry")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "ca"), 0o755); err != nil {
		return nil, err
	}
	ca, err := newCA("dhctl-rig-" + r.id + " CA")
	if err != nil {
		return nil, err
	}
	server, err := newServerCert(ca, "registry", []net.IP{net.IP(r.bridge.AsSlice())}, []string{"registry"})
	if err != nil {
		return nil, err
	}
	pw := make([]byte, 16)
	rand.Read(pw)
	password := hex.EncodeToString(pw)
	// The lowest cost: the registry checks the password on every request (each blob and
	// manifest of every push and pull), and at the default cost each check took 62 ms of the
	// rig's 2 cores. The password is random and the registry reachable only inside the rig.
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		return nil, err
	}
	reg := &Registry{
		Host:     netip.AddrPortFrom(r.bridge, registryPort).String(),
		User:     registryUser,
		Password: password,
		CACert:   ca.cert,
		CAFile:   filepath.Join(dir, "ca", "ca.crt"),
		rig:      r,
		done:     make(chan struct{}),
		log:      filepath.Join(dir, "registry.log"),
	}
	config := registrytest.ConfigYAML(filepath.Join(dir, "data"), reg.Host, filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "htpasswd"), "dhctl-rig", "warn")
	files := map[string][]byte{
		"ca/ca.crt":    ca.cert,
		"server.crt":   server.cert,
		"server.key":   server.key,
		"htpasswd":     []byte(registryUser + ":" + string(hash) + "\n"),
		"config.yml":   []byte(config),
		"password.txt": []byte(password),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, fmt.Errorf("rig: registry: writing %s: %w", name, err)
		}
	}
	logFile, err := os.Create(reg.log)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	reg.cmd = exec.Command("nsenter", "--net="+r.NetNS(), "docker-registry", "serve", filepath.Join(dir, "config.yml"))
	reg.cmd.Stdout, reg.cmd.Stderr = logFile, logFile
	reg.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Registered before it starts, so Close stops it whatever happens next.
	r.onClose(reg.stop)
	if err := reg.cmd.Start(); err != nil {
		return nil, fmt.Errorf("rig: starting docker-registry: %w", err)
	}
	go func() {
		reg.cmd.Wait()
		close(reg.done)
	}()
	if err := reg.waitReady(ctx, 30*time.Second); err != nil {
		return nil, err
	}
	return reg, nil
}

// Transport returns an HTTP transport that reaches the registry inside the
// rig's namespace and trusts the rig's CA. Use it with any registry client.
func (reg *Registry) Transport() *http.Transport {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(reg.CACert)
	return &http.Transport{
		DialContext:         reg.rig.DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     30 * time.Second,
	}
}

// waitReady waits until /v2/ answers over TLS with the rig's CA: 401 without
// credentials, 200 with them.
func (reg *Registry) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Transport: reg.Transport(), Timeout: 3 * time.Second}
	defer client.CloseIdleConnections()
	var last error
	for {
		select {
		case <-reg.done:
			data, _ := os.ReadFile(reg.log)
			return fmt.Errorf("rig: docker-registry exited while starting (log %s): %s", reg.log, tail(string(data), 15))
		default:
		}
		last = reg.ping(ctx, client)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			data, _ := os.ReadFile(reg.log)
			return fmt.Errorf("rig: waited %v for the registry at https://%s/v2/: %v (log %s): %s", timeout, reg.Host, last, reg.log, tail(string(data), 15))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (reg *Registry) ping(ctx context.Context, client *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+reg.Host+"/v2/", nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(reg.User, reg.Password)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /v2/ with credentials: %s", resp.Status)
	}
	return nil
}

func (reg *Registry) stop() error {
	if reg.cmd == nil || reg.cmd.Process == nil {
		return nil
	}
	reg.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-reg.done:
		return nil
	case <-time.After(5 * time.Second):
	}
	syscall.Kill(-reg.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-reg.done:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("rig: docker-registry did not exit 10s after SIGKILL")
	}
}

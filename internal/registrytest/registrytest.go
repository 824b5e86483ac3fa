// Package registrytest starts a real OCI registry (Debian's docker-registry, i.e. distribution)
// on 127.0.0.1 for integration tests, as air-gapped users run theirs: TLS from a CA made per
// registry, and basic auth. Everything is stopped and removed in t.Cleanup.
package registrytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Registry is a running registry.
type Registry struct {
	Host           string // 127.0.0.1:<port>
	User, Password string
	CACert         []byte // PEM
	CAFile         string
	Dir            string // its storage root
}

// Start runs a registry until the test ends. It fails the test when docker-registry is missing
// (scripts/ensure-deps.sh installs it) or does not answer within 30 s.
func Start(t testing.TB) *Registry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Fatalf("registrytest: docker-registry is not installed (scripts/ensure-deps.sh installs it): %v", err)
	}
	dir := t.TempDir()
	caPEM, certPEM, keyPEM, err := pki()
	if err != nil {
		t.Fatal(err)
	}
	pw := make([]byte, 12)
	rand.Read(pw)
	r := &Registry{User: "mirror", Password: hex.EncodeToString(pw), CACert: caPEM, CAFile: filepath.Join(dir, "ca.crt"), Dir: filepath.Join(dir, "data")}
	hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.Host = ln.Addr().String()
	ln.Close()
	config := ConfigYAML(r.Dir, r.Host, filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "htpasswd"), "registrytest", "error")
	for name, data := range map[string][]byte{
		"ca.crt": caPEM, "server.crt": certPEM, "server.key": keyPEM, "config.yml": []byte(config),
		"htpasswd": []byte(r.User + ":" + string(hash) + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	logFile, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", filepath.Join(dir, "config.yml"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("registrytest: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("registrytest: docker-registry did not exit 10 s after SIGKILL")
		}
		logFile.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &http.Client{Transport: r.Transport(), Timeout: 3 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+r.Host+"/v2/", nil)
		req.SetBasicAuth(r.User, r.Password)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("registrytest: docker-registry exited while starting: %s", log)
		case <-ctx.Done():
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("registrytest: no answer from https://%s/v2/ in 30 s: %v\n%s", r.Host, err, log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ConfigYAML is docker-registry's configuration for a registry as air-gapped sites run one:
// filesystem storage (deletes allowed), TLS, htpasswd basic auth, no access log.
func ConfigYAML(storage, addr, certFile, keyFile, htpasswdFile, realm, logLevel string) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: %s
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  tls:
    certificate: %s
    key: %s
auth:
  htpasswd:
    realm: %s
    path: %s
`, logLevel, storage, addr, certFile, keyFile, realm, htpasswdFile)
}

// Transport trusts the registry's CA.
func (r *Registry) Transport() *http.Transport {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(r.CACert)
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, TLSHandshakeTimeout: 10 * time.Second}
}

// pki makes a CA and a server certificate for 127.0.0.1 it signs.
func pki() (caPEM, certPEM, keyPEM []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "registrytest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "registry"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

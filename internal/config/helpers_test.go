package config

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/dhctl-dev/dhctl/candi"
)

// writeFile writes content into a temp dir of t and returns its path.
func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// envMap is a LookupEnv over a fixed map.
func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// loadProblems runs Load and returns its problems, failing the test on any other error.
func loadProblems(t testing.TB, opts LoadOptions) (*Cluster, Problems) {
	t.Helper()
	c, err := Load(context.Background(), opts)
	if err == nil {
		return c, nil
	}
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Load returned a non-Problems error: %v", err)
	}
	return nil, ps
}

// newSSHKey makes a real ed25519 private key in OpenSSH PEM form, encrypted when passphrase != "".
func newSSHKey(t testing.TB, passphrase string) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "test")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}

// candiFS is the built-in candi tree.
func candiFS() fs.FS { return candi.FS }

package ssh

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"
)

// writeEncryptedKey writes an OpenSSH ed25519 key encrypted with passphrase (bcrypt KDF, as
// ssh-keygen does) and returns its path.
func writeEncryptedKey(t *testing.T, passphrase string) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "test", []byte(passphrase))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// countingPrompt answers answer and counts how often it was asked.
func countingPrompt(answer string, asked *atomic.Int32) func(string) ([]byte, error) {
	return func(string) ([]byte, error) {
		asked.Add(1)
		return []byte(answer), nil
	}
}

func newHostClient(t *testing.T, host string, auth Auth) (*Client, error) {
	t.Helper()
	return New(Config{Host: host, User: "admin", Auth: auth, HostKeys: HostKeyPolicy{Mode: HostKeysInsecureIgnore}})
}

// 50 hosts sharing a KeyCache ask for an encrypted key's passphrase once and decrypt it once,
// also when their clients are made concurrently; without the cache, each client asks again.
func TestKeyCacheLoadsEachKeyOncePerRun(t *testing.T) {
	path := writeEncryptedKey(t, "correct horse")

	var asked atomic.Int32
	cache := NewKeyCache()
	auth := Auth{Keys: []KeyFile{{Path: path}}, PassphrasePrompt: countingPrompt("correct horse", &asked), KeyCache: cache}
	clients := make([]*Client, 50)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := newHostClient(t, fmt.Sprintf("10.0.0.%d", i+1), auth)
			if err != nil {
				t.Error(err)
				return
			}
			clients[i] = c
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if n := asked.Load(); n != 1 {
		t.Fatalf("passphrase asked %d times for 50 clients sharing a KeyCache, want 1", n)
	}
	for i, c := range clients {
		if len(c.signers) != 1 || c.signers[0] != clients[0].signers[0] {
			t.Fatalf("client %d has its own signer: the key was loaded again", i)
		}
	}

	var askedNoCache atomic.Int32
	auth = Auth{Keys: []KeyFile{{Path: path}}, PassphrasePrompt: countingPrompt("correct horse", &askedNoCache)}
	for i := 0; i < 2; i++ {
		if _, err := newHostClient(t, "10.0.0.1", auth); err != nil {
			t.Fatal(err)
		}
	}
	if n := askedNoCache.Load(); n != 2 {
		t.Fatalf("without a KeyCache the passphrase was asked %d times for 2 clients, want 2 (one per client)", n)
	}
}

// A wrong passphrase fails every client sharing the cache, naming the key, without asking again.
func TestKeyCacheKeepsFailures(t *testing.T) {
	path := writeEncryptedKey(t, "correct horse")
	var asked atomic.Int32
	auth := Auth{Keys: []KeyFile{{Path: path}}, PassphrasePrompt: countingPrompt("wrong", &asked), KeyCache: NewKeyCache()}
	for i := 0; i < 3; i++ {
		_, err := newHostClient(t, "10.0.0.1", auth)
		if err == nil || !strings.Contains(err.Error(), "wrong passphrase") || !strings.Contains(err.Error(), path) {
			t.Fatalf("client %d: err = %v, want a wrong-passphrase error naming %s", i, err, path)
		}
	}
	if n := asked.Load(); n != 1 {
		t.Fatalf("passphrase asked %d times, want 1", n)
	}
}

// Keys that differ (path, inline data or passphrase) are loaded separately.
func TestKeyCacheSeparatesKeys(t *testing.T) {
	a, b := writeEncryptedKey(t, "pa"), writeEncryptedKey(t, "pb")
	cache := NewKeyCache()
	ca, err := newHostClient(t, "10.0.0.1", Auth{Keys: []KeyFile{{Path: a, Passphrase: "pa"}}, KeyCache: cache})
	if err != nil {
		t.Fatal(err)
	}
	cb, err := newHostClient(t, "10.0.0.1", Auth{Keys: []KeyFile{{Path: b, Passphrase: "pb"}}, KeyCache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if string(ca.signers[0].PublicKey().Marshal()) == string(cb.signers[0].PublicKey().Marshal()) {
		t.Fatal("two different key files gave the same key")
	}
	if _, err := newHostClient(t, "10.0.0.1", Auth{Keys: []KeyFile{{Path: a, Passphrase: "pb"}}, KeyCache: cache}); err == nil {
		t.Fatal("a cached key was returned for a different (wrong) passphrase")
	}
}

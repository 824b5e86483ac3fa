package ssh

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// loadKeys reads and decrypts every key file once (so a passphrase prompt is not repeated on
// reconnect), through a.KeyCache when there is one.
func loadKeys(a Auth) ([]ssh.Signer, error) {
	var signers []ssh.Signer
	for _, k := range a.Keys {
		var s ssh.Signer
		var err error
		if a.KeyCache != nil {
			s, err = a.KeyCache.load(k, a.PassphrasePrompt)
		} else {
			s, err = loadKey(k, a.PassphrasePrompt)
		}
		if err != nil {
			return nil, err
		}
		signers = append(signers, s)
	}
	return signers, nil
}

// KeyCache holds the private keys loaded for the clients of one run. Without it every client
// (one per host) reads and decrypts its keys itself: for an encrypted OpenSSH key that is a
// bcrypt key derivation of 0.2-0.3 s of CPU, and, when the passphrase is not configured, one
// prompt, per host. Share one through Auth.KeyCache. Failures are kept too, so a wrong
// passphrase is reported for every host without asking again. Safe for concurrent use.
type KeyCache struct {
	mu   sync.Mutex // held while a key loads: clients wanting it wait for the one prompt
	keys map[keyCacheID]keyCacheEntry
}

type keyCacheID struct {
	path, data, passphrase string
}

type keyCacheEntry struct {
	signer ssh.Signer
	err    error
}

// NewKeyCache returns an empty cache.
func NewKeyCache() *KeyCache { return &KeyCache{keys: map[keyCacheID]keyCacheEntry{}} }

func (c *KeyCache) load(k KeyFile, prompt func(string) ([]byte, error)) (ssh.Signer, error) {
	id := keyCacheID{path: k.Path, data: string(k.Data), passphrase: k.Passphrase}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.keys[id]; ok {
		return e.signer, e.err
	}
	s, err := loadKey(k, prompt)
	c.keys[id] = keyCacheEntry{signer: s, err: err}
	return s, err
}

// authMethods builds the methods offered to the server, in order: key files, agent, password.
// It returns what it offers (for error messages) and a closer for the agent connection.
func authMethods(a Auth, signers []ssh.Signer) (methods []ssh.AuthMethod, offered []string, closeFn func(), err error) {
	closeFn = func() {}
	for _, k := range a.Keys {
		offered = append(offered, "key "+k.Path)
	}
	if len(signers) > 0 {
		methods = append(methods, ssh.PublicKeys(signers...))
	}
	if a.AgentSocket != "" {
		conn, err := net.Dial("unix", a.AgentSocket)
		if err != nil {
			return nil, nil, closeFn, fmt.Errorf("connect to ssh-agent at %s (SSH_AUTH_SOCK): %w; start an agent or unset SSH_AUTH_SOCK", a.AgentSocket, err)
		}
		closeFn = func() { conn.Close() }
		methods = append(methods, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
		offered = append(offered, "ssh-agent "+a.AgentSocket)
	}
	if a.Password != "" {
		pw := a.Password
		methods = append(methods, ssh.Password(pw),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range answers {
					answers[i] = pw
				}
				return answers, nil
			}))
		offered = append(offered, "password")
	}
	if len(methods) == 0 {
		return nil, nil, closeFn, errors.New("no authentication method: give a private key, an ssh-agent (SSH_AUTH_SOCK) or a password")
	}
	return methods, offered, closeFn, nil
}

// loadKey reads and decrypts one private key file, refusing files others can read (as OpenSSH
// does) and naming the file in every error.
func loadKey(k KeyFile, prompt func(string) ([]byte, error)) (ssh.Signer, error) {
	pemBytes := k.Data
	if pemBytes == nil {
		fi, err := os.Stat(k.Path)
		if err != nil {
			return nil, fmt.Errorf("private key %s: %w; check the path given for the SSH key", k.Path, err)
		}
		if fi.IsDir() {
			return nil, fmt.Errorf("private key %s is a directory; give the private key file (e.g. %s)", k.Path, filepath.Join(k.Path, "id_ed25519"))
		}
		if pemBytes, err = os.ReadFile(k.Path); err != nil {
			return nil, fmt.Errorf("private key %s is unreadable: %w; check its owner and permissions", k.Path, err)
		}
		// What the file is comes first: "chmod 600" is wrong advice for a public key (0644 as
		// ssh-keygen writes it) or for some other file given by mistake.
		if err := checkPrivateKeyFormat(k.Path, pemBytes); err != nil {
			return nil, err
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			return nil, fmt.Errorf("private key %s: permissions %#o are too open (readable by others); run `chmod 600 %s`", k.Path, perm, k.Path)
		}
	} else if err := checkPrivateKeyFormat(k.Path, pemBytes); err != nil {
		return nil, err
	}
	// The KDF's rounds are the key's to say and each costs ~8 ms: refuse a key asking for more
	// than any real one does before spending them.
	if r := KDFRounds(pemBytes); r > MaxKDFRounds {
		return nil, fmt.Errorf("private key %s asks for %d bcrypt rounds to decrypt (more than %d; ssh-keygen's default is 16): re-encrypt it with `ssh-keygen -p -a 100 -f <key>`", k.Path, r, MaxKDFRounds)
	}
	var raw any
	var err error
	if k.Passphrase != "" {
		raw, err = ssh.ParseRawPrivateKeyWithPassphrase(pemBytes, []byte(k.Passphrase))
	} else {
		raw, err = ssh.ParseRawPrivateKey(pemBytes)
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			if prompt == nil {
				return nil, fmt.Errorf("private key %s is encrypted and no passphrase was given; give its passphrase or add the key to ssh-agent", k.Path)
			}
			pass, perr := prompt(k.Path)
			if perr != nil {
				return nil, fmt.Errorf("private key %s: ask for passphrase: %w", k.Path, perr)
			}
			raw, err = ssh.ParseRawPrivateKeyWithPassphrase(pemBytes, pass)
		}
	}
	switch {
	case errors.Is(err, x509.IncorrectPasswordError) || (err != nil && strings.Contains(err.Error(), "decryption password incorrect")):
		return nil, fmt.Errorf("private key %s: wrong passphrase", k.Path)
	case err != nil:
		return nil, fmt.Errorf("private key %s: %w; it must be an OpenSSH or PEM private key", k.Path, err)
	}
	signer, err := ssh.NewSignerFromKey(raw)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", k.Path, err)
	}
	return signer, nil
}

// checkPrivateKeyFormat says what data is when it is not a private key in OpenSSH or PEM format
// (a public key, a PuTTY key, an empty or unrelated file), so the user is told what to give
// instead of a parser's error. It does not parse the key itself.
func checkPrivateKeyFormat(name string, data []byte) error {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return fmt.Errorf("private key %s is empty; give the private key file", name)
	}
	block, _ := pem.Decode(trimmed)
	if block != nil && strings.HasSuffix(block.Type, "PRIVATE KEY") {
		return nil
	}
	publicKey := bytes.HasPrefix(trimmed, []byte("---- BEGIN SSH2 PUBLIC KEY")) ||
		block != nil && strings.HasSuffix(block.Type, "PUBLIC KEY")
	if !publicKey {
		_, _, _, _, err := ssh.ParseAuthorizedKey(trimmed)
		publicKey = err == nil
	}
	if publicKey {
		instead := "give the private key"
		if priv, ok := strings.CutSuffix(name, ".pub"); ok {
			instead += " (" + priv + ")"
		}
		return fmt.Errorf("private key %s is a public key (.pub): %s", name, instead)
	}
	if bytes.HasPrefix(trimmed, []byte("PuTTY-User-Key-File-")) {
		return fmt.Errorf("private key %s is a PuTTY key (.ppk), not a private key in OpenSSH or PEM format; convert it: `puttygen %s -O private-openssh -o <new file>`", name, name)
	}
	if block == nil {
		return fmt.Errorf("private key %s is not a private key in OpenSSH or PEM format (no -----BEGIN ... PRIVATE KEY----- block); give the private key file", name)
	}
	return fmt.Errorf("private key %s holds a PEM %q block, not a private key in OpenSSH or PEM format; give the private key file", name, block.Type)
}

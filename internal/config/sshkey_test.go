package config

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// keyWithRounds is an encrypted OpenSSH key whose bcrypt KDF asks for the given rounds
// (ssh-keygen -a; the default is 16, each costs ~8 ms here).
func keyWithRounds(t *testing.T, passphrase string, rounds uint32) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "test", []byte(passphrase))
	if err != nil {
		t.Fatal(err)
	}
	b := block.Bytes
	off := len("openssh-key-v1\x00")
	for i := 0; i < 2; i++ { // ciphername, kdfname
		off += 4 + int(binary.BigEndian.Uint32(b[off:]))
	}
	off += 4                                         // length of kdfoptions
	off += 4 + int(binary.BigEndian.Uint32(b[off:])) // salt
	binary.BigEndian.PutUint32(b[off:], rounds)      // rounds
	return string(pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: b}))
}

// TestSSHKeyKDFRoundsBounded: a key's passphrase is checked by running its KDF, whose rounds the
// key itself names: a key asking for 2^24 rounds (~37 hours) must not hold Load. The check has a
// budget per run; a key beyond it is not checked (the SSH connection will use the passphrase).
func TestSSHKeyKDFRoundsBounded(t *testing.T) {
	conn := "apiVersion: dhctl.deckhouse.io/v1alpha1\nkind: SSHConfig\nsshUser: u\nsshAgentPrivateKeys:\n" +
		"- key: {{ env \"SLOW\" | quote }}\n  passphrase: wrong\n" +
		"- key: {{ env \"FAST\" | quote }}\n  passphrase: wrong\n"
	env := envMap(map[string]string{"SLOW": keyWithRounds(t, "right", 1<<24), "FAST": keyWithRounds(t, "right", 16)})
	_, err := loadOrHang(t, t.Context(), LoadOptions{ConnectionConfigPaths: []string{writeFile(t, "c.yml", conn)}, LookupEnv: env})
	if err == nil {
		t.Fatal("the wrong passphrase of the key with 16 rounds is not reported")
	}
	if got := err.Error(); strings.Contains(got, "sshAgentPrivateKeys[0]") || !strings.Contains(got, "sshAgentPrivateKeys[1].passphrase: does not decrypt the key") {
		t.Errorf("want only key 1's passphrase reported:\n%s", got)
	}
}

func TestOpenSSHKDFRounds(t *testing.T) {
	if got := opensshKDFRounds(keyWithRounds(t, "x", 1234)); got != 1234 {
		t.Errorf("rounds = %d, want 1234", got)
	}
	for _, key := range []string{newSSHKey(t, ""), "", "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"} {
		if got := opensshKDFRounds(key); got != 0 {
			t.Errorf("rounds of %.40q = %d, want 0", key, got)
		}
	}
}

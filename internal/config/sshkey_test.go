package config

import (
	"strings"
	"testing"

	dhssh "github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/internal/ssh/sshtest"
)

// keyWithRounds is an encrypted OpenSSH key whose bcrypt KDF asks for the given rounds.
func keyWithRounds(t *testing.T, passphrase string, rounds uint32) string {
	t.Helper()
	return sshtest.KeyWithKDFRounds(t, passphrase, rounds)
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
	if got := dhssh.KDFRounds([]byte(keyWithRounds(t, "x", 1234))); got != 1234 {
		t.Errorf("rounds = %d, want 1234", got)
	}
	for _, key := range []string{newSSHKey(t, ""), "", "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"} {
		if got := dhssh.KDFRounds([]byte(key)); got != 0 {
			t.Errorf("rounds of %.40q = %d, want 0", key, got)
		}
	}
}

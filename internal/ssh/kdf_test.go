package ssh

import (
	"strings"
	"testing"

	"github.com/dhctl-dev/dhctl/internal/ssh/sshtest"
)

func TestKDFRounds(t *testing.T) {
	if got := KDFRounds([]byte(sshtest.KeyWithKDFRounds(t, "x", 1234))); got != 1234 {
		t.Errorf("rounds = %d, want 1234", got)
	}
	for _, key := range []string{"", "not a key", "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"} {
		if got := KDFRounds([]byte(key)); got != 0 {
			t.Errorf("rounds of %.40q = %d, want 0", key, got)
		}
	}
}

// A key whose header asks for 2^24 bcrypt rounds (about 37 hours) is refused at once, before any
// is run; a normal one still loads.
func TestKeyAskingForAbsurdKDFRoundsIsRefused(t *testing.T) {
	_, err := loadKey(KeyFile{Path: "inline", Data: []byte(sshtest.KeyWithKDFRounds(t, "pw", 1<<24)), Passphrase: "pw"}, nil)
	if err == nil || !strings.Contains(err.Error(), "16777216 bcrypt rounds") || !strings.Contains(err.Error(), "ssh-keygen -p") {
		t.Fatalf("absurd rounds: %v", err)
	}
	if _, err := loadKey(KeyFile{Path: "inline", Data: []byte(sshtest.KeyWithKDFRounds(t, "pw", 16)), Passphrase: "pw"}, nil); err != nil {
		t.Errorf("a normal encrypted key: %v", err)
	}
}

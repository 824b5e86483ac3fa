package ssh_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	dssh "github.com/dhctl-dev/dhctl/internal/ssh"
)

// A file that is not a private key is named for what it is, before any permission advice:
// "chmod 600" does not help a directory, a public key or some other file given by mistake.
func TestKeyFilesThatAreNotPrivateKeysSayWhatTheyAre(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pubRaw, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "test")
	if err != nil {
		t.Fatal(err)
	}
	privPEM := pem.EncodeToMemory(block)
	pub, err := ssh.NewPublicKey(pubRaw)
	if err != nil {
		t.Fatal(err)
	}
	authorized := ssh.MarshalAuthorizedKey(pub)
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	keyDir := filepath.Join(dir, "keys")
	if err := os.Mkdir(keyDir, 0o755); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		key  dssh.KeyFile
		want []string
	}{
		{"directory", dssh.KeyFile{Path: keyDir}, []string{keyDir + " is a directory"}},
		{"pub-file-as-ssh-keygen-writes-it", dssh.KeyFile{Path: write("id_ed25519.pub", authorized, 0o644)},
			[]string{"is a public key (.pub): give the private key (" + filepath.Join(dir, "id_ed25519") + ")"}},
		{"public-key-under-another-name", dssh.KeyFile{Path: write("mykey", authorized, 0o600)}, []string{"mykey is a public key (.pub): give the private key"}},
		{"pem-public-key", dssh.KeyFile{Path: write("pkix.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}), 0o644)}, []string{"is a public key"}},
		{"inline-public-key", dssh.KeyFile{Path: "SSHConfig sshAgentPrivateKeys[0]", Data: authorized}, []string{"SSHConfig sshAgentPrivateKeys[0] is a public key"}},
		{"not-a-key", dssh.KeyFile{Path: write("notes.txt", []byte("hello\n"), 0o644)}, []string{"notes.txt is not a private key in OpenSSH or PEM format"}},
		{"certificate", dssh.KeyFile{Path: write("cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), 0o600)},
			[]string{`holds a PEM "CERTIFICATE" block, not a private key in OpenSSH or PEM format`}},
		{"putty", dssh.KeyFile{Path: write("key.ppk", []byte("PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n"), 0o600)}, []string{"is a PuTTY key (.ppk)", "puttygen"}},
		{"empty", dssh.KeyFile{Path: write("empty", nil, 0o600)}, []string{"empty is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dssh.New(dssh.Config{Host: "192.0.2.1", User: "u", Auth: dssh.Auth{Keys: []dssh.KeyFile{tc.key}},
				HostKeys: dssh.HostKeyPolicy{Mode: dssh.HostKeysInsecureIgnore}})
			if err == nil {
				t.Fatal("accepted")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
			if strings.Contains(err.Error(), "chmod") {
				t.Errorf("permission advice for a file that is not a private key: %v", err)
			}
		})
	}

	// A real private key readable by others still gets the permission advice; at 0600 it loads.
	open := write("id_open", privPEM, 0o644)
	_, err = dssh.New(dssh.Config{Host: "192.0.2.1", User: "u", Auth: dssh.Auth{Keys: []dssh.KeyFile{{Path: open}}},
		HostKeys: dssh.HostKeyPolicy{Mode: dssh.HostKeysInsecureIgnore}})
	if err == nil || !strings.Contains(err.Error(), "too open") || !strings.Contains(err.Error(), "chmod 600 "+open) {
		t.Fatalf("private key readable by others: %v", err)
	}
	good := write("id_good", privPEM, 0o600)
	if _, err := dssh.New(dssh.Config{Host: "192.0.2.1", User: "u", Auth: dssh.Auth{Keys: []dssh.KeyFile{{Path: good}}},
		HostKeys: dssh.HostKeyPolicy{Mode: dssh.HostKeysInsecureIgnore}}); err != nil {
		t.Fatalf("a good key: %v", err)
	}
}

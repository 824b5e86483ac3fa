package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	xssh "golang.org/x/crypto/ssh"
)

// Careless command lines get exit 2 and a message before anything is created.
func TestCarelessCommandLines(t *testing.T) {
	stateDir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"test", "ssh-connection", "--ssh-host", "10.0.0.1", "--ssh-port", "0"}, "--ssh-port"},
		{[]string{"test", "ssh-connection", "--ssh-host", "10.0.0.1", "--ssh-bastion-port", "70000"}, "--ssh-bastion-port"},
		{[]string{"config", "validate", "--config", "../../examples/static-cluster.yml", "--log-format", "xml"}, "--log-format"},
		{[]string{"test", "ssh-connection", "--ssh-host", "root@root@10.0.0.1"}, "root@root@10.0.0.1"},
		{[]string{"test", "ssh-connection", "--ssh-host", "ssh://10.0.0.1"}, "is a URL"},
	} {
		code, _, errOut := runCLI(t, map[string]string{"HOME": t.TempDir()}, append(tc.args, "--state-dir", stateDir)...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, want 2 and %q in:\n%s", tc.args, code, tc.want, errOut)
		}
	}
	if entries, _ := os.ReadDir(stateDir); len(entries) != 0 {
		t.Errorf("a refused command line left %d entries in the state dir", len(entries))
	}
}

// A leading ~/ in a path flag is the home directory, also after "--flag=" where no shell expands it.
func TestTildeInPathFlags(t *testing.T) {
	home := t.TempDir()
	data, err := os.ReadFile("../../examples/static-cluster.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "c.yml"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, map[string]string{"HOME": home}, "config", "validate", "--config=~/c.yml")
	if code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("--config=~/c.yml: exit %d\n%s", code, errOut)
	}
	code, _, errOut = runCLI(t, map[string]string{"HOME": home, "DHCTL_CONFIG": "~/c.yml"}, "config", "validate")
	if code != 0 {
		t.Fatalf("DHCTL_CONFIG=~/c.yml: exit %d\n%s", code, errOut)
	}
	code, _, errOut = runCLI(t, nil, "config", "validate", "--config=~/c.yml")
	if code != 2 || !strings.Contains(errOut, "HOME is not set") {
		t.Fatalf("no HOME: exit %d\n%s", code, errOut)
	}
}

// The bootstrap needs its InitConfiguration: a misspelt or missing one is named, not ignored.
func TestBootstrapRequiresInitConfiguration(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yml")
	cfg := "apiVersion: deckhouse.io/v1\nkind: ClusterConfiguration\nclusterType: Static\npodSubnetCIDR: 10.111.0.0/16\nserviceSubnetCIDR: 10.222.0.0/16\nkubernetesVersion: Automatic\nclusterDomain: cluster.local\n"
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"bootstrap"}, {"bootstrap-phase", "preflight"}} {
		code, _, errOut := runCLI(t, map[string]string{"HOME": t.TempDir()}, append(cmd, "--config", p, "--ssh-host", "10.0.0.1", "--state-dir", t.TempDir())...)
		if code != 2 || !strings.Contains(errOut, "needs a document of kind InitConfiguration") {
			t.Errorf("%v without InitConfiguration: exit %d\n%s", cmd, code, errOut)
		}
	}
}

// --ssh-connect-timeout bounds a connection that never speaks SSH, and the error names it.
func TestSSHConnectTimeoutFlag(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // accepted, never answered
		}
	}()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := xssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, out, errOut := runCLI(t, map[string]string{"HOME": t.TempDir()}, "test", "ssh-connection", "--ssh-host", ln.Addr().String(),
		"--ssh-user", "nobody", "--ssh-agent-private-keys", key, "--ssh-connect-timeout", "300ms", "--ssh-insecure-ignore-host-keys", "--state-dir", t.TempDir())
	if code != 1 || !strings.Contains(out+errOut, "connect timeout (300ms)") {
		t.Fatalf("exit %d after %v:\n%s%s", code, time.Since(start), out, errOut)
	}
}

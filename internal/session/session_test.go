package session

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/ssh"
)

func TestFlagsWinOverSSHConfigDocuments(t *testing.T) {
	cfg := &config.Cluster{
		SSHConfig: &config.SSHConfig{
			SSHUser: "ubuntu", SSHPort: 2200, SSHBastionHost: "bastion.example.com", SSHBastionUser: "jump",
			SSHAgentPrivateKeys: []config.SSHPrivateKey{{Key: "KEY-DATA", Passphrase: "secret-pass"}},
			SudoPassword:        "sudo-pass",
		},
		SSHHosts: []config.SSHHost{{Host: "10.0.0.1"}, {Host: "10.0.0.2"}},
	}
	r, err := resolveSSH(SSHOptions{User: "admin", KeyFiles: []string{"/keys/id"}, KnownHostsFile: "none"}, cfg, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	b := r.base
	if b.User != "admin" || b.Port != 2200 || b.Bastion.Host != "bastion.example.com" || b.Bastion.User != "jump" || b.SudoPassword != "sudo-pass" {
		t.Errorf("merged config: %+v", b)
	}
	if strings.Join(r.hosts, ",") != "10.0.0.1,10.0.0.2" {
		t.Errorf("hosts from SSHHost documents: %v", r.hosts)
	}
	if len(b.Auth.Keys) != 2 || b.Auth.Keys[0].Path != "/keys/id" || string(b.Auth.Keys[1].Data) != "KEY-DATA" || b.Auth.Keys[1].Passphrase != "secret-pass" {
		t.Errorf("keys: %+v", b.Auth.Keys)
	}
	if b.HostKeys.Mode != ssh.HostKeysTrustOnFirstUse || b.HostKeys.UserKnownHostsFile != "" {
		t.Errorf("host key policy: %+v", b.HostKeys)
	}

	r, _ = resolveSSH(SSHOptions{Hosts: []string{"192.168.1.5"}, Port: 22}, cfg, noEnv)
	if strings.Join(r.hosts, ",") != "192.168.1.5" || r.base.Port != 22 || r.base.User != "ubuntu" {
		t.Errorf("--ssh-host/--ssh-port must replace the documents: %v %+v", r.hosts, r.base)
	}
	if r, _ := resolveSSH(SSHOptions{}, nil, noEnv); r.base.Port != ssh.DefaultPort {
		t.Errorf("default port %d", r.base.Port)
	}
	// user@host:port is read as such (and the bastion too); an impossible host is a usage error
	// before any state dir exists.
	r, err = resolveSSH(SSHOptions{Hosts: []string{"ops@10.0.0.1:2222"}, BastionHost: "jump@10.0.0.9:2200"}, nil, noEnv)
	if err != nil || r.base.Bastion != (ssh.Endpoint{Host: "10.0.0.9", Port: 2200, User: "jump"}) {
		t.Errorf("bastion endpoint: %+v %v", r.base.Bastion, err)
	}
	if _, err := resolveSSH(SSHOptions{Hosts: []string{"root@root@10.0.0.1"}}, nil, noEnv); err == nil {
		t.Error("a host with two users was accepted")
	}
}

func TestClusterName(t *testing.T) {
	cloud := &config.Cluster{ClusterConfiguration: config.ClusterConfiguration{Cloud: &config.CloudSection{Prefix: "prod"}}}
	for _, tc := range []struct {
		cfg   *config.Cluster
		hosts []string
		want  string
	}{
		{cloud, []string{"10.0.0.1"}, "prod"},
		{nil, []string{"10.0.0.1"}, "static-10.0.0.1"},
		{nil, []string{"[fd00::1]:2222"}, "static-fd00__1-2222"},
		{nil, []string{"root@10.0.0.1:2222"}, "static-10.0.0.1-2222"},
		// Addresses that a plain character swap would collapse stay apart.
		{nil, []string{"::1"}, "static-__1"},
		{nil, []string{"1::"}, "static-1__"},
		{nil, []string{"[0:0::1]:22"}, "static-__1-22"}, // the same address as ::1, written longer
		{nil, []string{"node-a.example.com"}, "static-node-a.example.com"},
		{nil, nil, "default"},
	} {
		if got := ClusterName(tc.cfg, tc.hosts); got != tc.want {
			t.Errorf("ClusterName(%v) = %q, want %q", tc.hosts, got, tc.want)
		}
	}
}

// Secrets of the configuration never reach the output or the debug log, and the debug log and
// the state dir exist with private modes.
func TestSessionRedactsConfigSecretsAndWritesDebugLog(t *testing.T) {
	root := t.TempDir()
	cfg := &config.Cluster{
		SSHConfig:         &config.SSHConfig{SSHUser: "u", SudoPassword: "Sudo-Pa55-xyz", SSHAgentPrivateKeys: []config.SSHPrivateKey{{Key: "k", Passphrase: "PassPhrase-987"}}},
		InitConfiguration: &config.InitConfiguration{Deckhouse: config.DeckhouseInit{RegistryDockerCfg: "eyJhdXRocyI6e319"}},
	}
	var out strings.Builder
	s, err := Open(context.Background(), Options{StateRoot: root, Command: "test", Out: &out, Config: cfg, SSH: SSHOptions{Hosts: []string{"10.1.1.1"}}})
	if err != nil {
		t.Fatal(err)
	}
	s.Log().Info("connecting", "detail", "sudo password is Sudo-Pa55-xyz and passphrase PassPhrase-987, cfg eyJhdXRocyI6e319")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "static-10.1.1.1")
	info, err := os.Stat(dir)
	if err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("state dir %s: %v %v", dir, info, err)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*-test.log"))
	if len(logs) != 1 {
		t.Fatalf("debug logs: %v", logs)
	}
	data, _ := os.ReadFile(logs[0])
	if !strings.Contains(string(data), "connecting") {
		t.Fatalf("debug log lacks the record:\n%s", data)
	}
	for _, secret := range []string{"Sudo-Pa55-xyz", "PassPhrase-987", "eyJhdXRocyI6e319"} {
		if strings.Contains(out.String(), secret) || strings.Contains(string(data), secret) {
			t.Errorf("secret %q reached the log", secret)
		}
	}
}

func TestSecondSessionOnTheSameClusterIsRefused(t *testing.T) {
	root := t.TempDir()
	opts := Options{StateRoot: root, ClusterName: "c1", Command: "bootstrap"}
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Open(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "pid") {
		t.Fatalf("second open: %v, want a lock error naming the holder", err)
	}
	if _, err := Open(context.Background(), Options{StateRoot: root, ClusterName: "../x"}); err == nil {
		t.Fatal("a cluster name with a path was accepted")
	}
}

func noEnv(string) (string, bool) { return "", false }

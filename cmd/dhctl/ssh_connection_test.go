package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dhctl-dev/dhctl/internal/ssh/sshtest"
)

// `dhctl test ssh-connection` as an operator runs it: the real binary, inside the lab's network,
// against real sshd hosts behind a bastion, with the key, the sudo password and the hosts coming
// from a connection config file. Host keys are pinned in the state dir on the first run and
// checked on the second.
func TestSSHConnectionCommand(t *testing.T) {
	lab := sshtest.NewLab(t, 3, sshtest.Options{})
	bastion, h1, h2 := lab.Hosts[0], lab.Hosts[1], lab.Hosts[2]
	user := lab.AddUser(t, sshtest.SudoPassword)
	key, err := os.ReadFile(user.Key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	connection := filepath.Join(dir, "connection.yml")
	doc := fmt.Sprintf(`apiVersion: dhctl.deckhouse.io/v1alpha1
kind: SSHConfig
sshUser: %s
sshAgentPrivateKeys:
- key: |
%s
sudoPassword: %q
sshBastionHost: %s
---
apiVersion: dhctl.deckhouse.io/v1alpha1
kind: SSHHost
host: %s
---
apiVersion: dhctl.deckhouse.io/v1alpha1
kind: SSHHost
host: %s
`, user.Name, indent(string(key), "    "), user.Password, bastion.Addr, h1.Addr, h2.Addr)
	if err := os.WriteFile(connection, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := buildDhctl(t)
	stateRoot := filepath.Join(dir, "state")

	run := func() (string, string, int) {
		cmd := exec.Command("ip", "netns", "exec", lab.NetNS, bin, "test", "ssh-connection",
			"--connection-config", connection, "--state-dir", stateRoot, "--ssh-known-hosts", "none")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		if exitErr, ok := err.(*exec.ExitError); ok {
			code = exitErr.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errOut.String(), code
	}

	out, errOut, code := run()
	if code != 0 {
		t.Fatalf("first run: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{
		user.Name + "@" + h1.Addr + ":22", user.Name + "@" + h2.Addr + ":22",
		"Debian", "Linux ", "with password", "newly pinned SHA256:",
		"bastion " + bastion.Addr + ":22: host key newly pinned", "all 2 hosts reachable",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("first run: output lacks %q:\n%s", want, out)
		}
	}
	clusterDir := filepath.Join(stateRoot, "static-"+h1.Addr)
	pins, err := os.ReadFile(filepath.Join(clusterDir, "known_hosts"))
	if err != nil {
		t.Fatalf("host keys not pinned in the cluster's state dir: %v", err)
	}
	for _, h := range []*sshtest.Host{bastion, h1, h2} {
		if !strings.Contains(string(pins), h.Addr) {
			t.Errorf("known_hosts lacks %s:\n%s", h.Addr, pins)
		}
	}
	logs, _ := filepath.Glob(filepath.Join(clusterDir, "logs", "*.log"))
	if len(logs) != 1 {
		t.Fatalf("want one debug log in the state dir, found %v", logs)
	}
	debugLog, err := os.ReadFile(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{user.Password, strings.TrimSpace(string(key))} {
		if strings.Contains(out+errOut+string(debugLog), secret) {
			t.Fatalf("a secret reached the output or the debug log")
		}
	}

	out, errOut, code = run()
	if code != 0 || strings.Contains(out, "newly pinned") || !strings.Contains(out, "pinned SHA256:") {
		t.Fatalf("second run: exit %d, want keys already pinned:\n%s\n%s", code, out, errOut)
	}
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n")
}

// buildDhctl builds the command into a temporary directory.
func buildDhctl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dhctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

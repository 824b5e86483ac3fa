package main

import (
	"strings"
	"testing"
)

// The bootstrap's command line: roles of the hosts, usage errors naming the flag, and a dry run
// listing every phase without touching a machine.
func TestBootstrapCommandLine(t *testing.T) {
	common := []string{"--config", "../../examples/static-cluster.yml", "--state-dir", t.TempDir(), "--ssh-known-hosts", "none"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--worker-host", "192.168.199.11"}, "--worker-host needs the masters as --ssh-host flags too"},
		{[]string{"--ssh-host", "192.168.199.10", "--worker-host", "192.168.199.10"}, "is also an --ssh-host"},
		{[]string{"--ssh-host", "master.example.com"}, `node address "master.example.com" is not an IP address`},
		{[]string{"--ssh-host", "192.168.199.10", "--packages-source", "ftp"}, `--packages-source "ftp"`},
		{[]string{"--ssh-host", "192.168.199.10", "--post-bootstrap-script-path", "/nonexistent/script.sh"}, "--post-bootstrap-script-path"},
	} {
		code, _, errOut := runCLI(t, nil, append(append([]string{"bootstrap"}, common...), tc.args...)...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, want 2 and %q in:\n%s", tc.args, code, tc.want, errOut)
		}
	}

	code, out, errOut := runCLI(t, nil, append(append([]string{"bootstrap"}, common...),
		"--ssh-host", "192.168.199.10", "--ssh-host", "192.168.199.12", "--worker-host", "192.168.199.11", "--dry-run")...)
	if code != 0 {
		t.Fatalf("dry run: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{"Dry run finished", "preflight", "first-master", "install/cni", "nodes/masters", "nodes/workers", "wait-cluster"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "nodes/masters                        skipped") {
		t.Errorf("a second --ssh-host is another master:\n%s", out)
	}
}

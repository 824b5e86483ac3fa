package sshtest

import (
	"os"
	"os/exec"
	"strings"
)

// required maps a program the harness runs to the Debian package providing it.
var required = [][2]string{ //nolint:gochecknoglobals // immutable table
	{"/usr/sbin/sshd", "openssh-server"},
	{"/usr/bin/ssh", "openssh-client"},
	{"/usr/bin/scp", "openssh-client"},
	{"/usr/bin/ssh-keygen", "openssh-client"},
	{"/usr/bin/ssh-agent", "openssh-client"},
	{"/usr/bin/sudo", "sudo"},
	{"/usr/sbin/visudo", "sudo"},
	{"/usr/sbin/useradd", "passwd"},
	{"/usr/sbin/ip", "iproute2"},
	{"/usr/bin/tar", "tar"},
}

// EnsureTools installs (apt-get) the Debian packages whose programs are missing.
func EnsureTools(t TB) {
	t.Helper()
	var missing []string
	seen := map[string]bool{}
	for _, r := range required {
		if _, err := os.Stat(r[0]); err == nil {
			continue
		}
		if _, err := exec.LookPath(r[0][strings.LastIndexByte(r[0], '/')+1:]); err == nil {
			continue
		}
		if !seen[r[1]] {
			seen[r[1]] = true
			missing = append(missing, r[1])
		}
	}
	if len(missing) == 0 {
		return
	}
	t.Logf("sshtest: installing missing packages: %s", strings.Join(missing, " "))
	install := func() ([]byte, error) {
		cmd := exec.Command("apt-get", append([]string{"install", "-y", "-q", "--no-install-recommends"}, missing...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	if _, err := install(); err != nil {
		if out, err := exec.Command("apt-get", "update", "-q").CombinedOutput(); err != nil {
			t.Fatalf("sshtest: apt-get update: %v: %s", err, out)
		}
		if out, err := install(); err != nil {
			t.Fatalf("sshtest: apt-get install %s: %v: %s; install them by hand", strings.Join(missing, " "), err, out)
		}
	}
}

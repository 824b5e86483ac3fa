package cleanup

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/internal/ssh/sshtest"
)

// fakeCleanup speaks the cleanup script's protocol without touching the host: it records each
// run in a file, so the test sees it ran, and fails when told to.
const fakeCleanup = `#!/bin/bash
exec 3>&1 1>&2
echo noise
n=$(cat /tmp/dhctl-abort-test-runs 2>/dev/null || echo 0)
echo $((n + 1)) >/tmp/dhctl-abort-test-runs
echo "::did stopped kubelet.service" >&3
if [[ -f /tmp/dhctl-abort-test-fail ]]; then
	echo "::failed removing /etc/kubernetes" >&3
	exit 1
fi
echo "::clean" >&3
`

func TestCleanReportsEveryHostAndGoesOnPastAnUnreachableOne(t *testing.T) {
	lab := sshtest.NewLab(t, 3, sshtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := func(h *sshtest.Host) *ssh.Client {
		c, err := ssh.New(ssh.Config{Host: h.Addr, Port: h.Port, User: "root",
			Auth:           ssh.Auth{Keys: []ssh.KeyFile{{Path: lab.RootKey}}},
			HostKeys:       ssh.HostKeyPolicy{StateDir: filepath.Join(t.TempDir(), "state")},
			ConnectTimeout: 3 * time.Second, ReconnectAttempts: 1, DialContext: lab.DialContext})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ok, failing, down := lab.Hosts[0], lab.Hosts[1], lab.Hosts[2]
	clients := []*ssh.Client{client(ok), client(failing), client(down)}
	// The lab's hosts share the file system: the failing one is told apart by its address.
	script := strings.Replace(fakeCleanup, "[[ -f /tmp/dhctl-abort-test-fail ]]",
		"[[ $(hostname -I 2>/dev/null; ip -o addr 2>/dev/null) == *"+failing.Addr+"/* ]]", 1)
	script = strings.ReplaceAll(script, "/tmp/dhctl-abort-test-runs", filepath.Join(t.TempDir(), "runs"))
	down.Stop()

	rep := Clean(ctx, clients, []byte(script), Options{PerHostTimeout: time.Minute})
	if len(rep.Hosts) != 3 {
		t.Fatalf("report has %d hosts", len(rep.Hosts))
	}
	want := []Status{StatusCleaned, StatusFailed, StatusUnreachable}
	for i, h := range rep.Hosts {
		if h.Status != want[i] {
			t.Errorf("host %s: %s (%v), want %s", h.Host, h.Status, h.Err, want[i])
		}
	}
	if got := rep.Hosts[0].Did; len(got) != 1 || got[0] != "stopped kubelet.service" {
		t.Errorf("cleaned host's actions = %q", got)
	}
	if got := rep.Hosts[1].Failed; len(got) != 1 || !strings.Contains(rep.Hosts[1].Err.Error(), "removing /etc/kubernetes") {
		t.Errorf("failing host: failed=%q err=%v", got, rep.Hosts[1].Err)
	}
	if rep.AllCleaned() || len(rep.Cleaned()) != 1 || rep.Cleaned()[0] != ok.Addr {
		t.Errorf("AllCleaned=%v Cleaned=%v", rep.AllCleaned(), rep.Cleaned())
	}
	var out bytes.Buffer
	if _, err := rep.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{ok.Addr + ": cleaned", "- stopped kubelet.service", failing.Addr + ": failed", "FAILED: removing /etc/kubernetes", down.Addr + ": unreachable", "error: "} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("report lacks %q:\n%s", w, out.String())
		}
	}
	if err := rep.Err(); err == nil || !strings.Contains(err.Error(), down.Addr) || strings.Contains(err.Error(), "host "+ok.Addr+":") {
		t.Errorf("Err() = %v", err)
	}
}

func TestParseOutputNeedsTheCleanMark(t *testing.T) {
	p := parseOutput([]byte("::did a\nnoise\n::failed b\n"))
	if p.clean || len(p.Did) != 1 || len(p.Failed) != 1 {
		t.Fatalf("%+v", p)
	}
	if !parseOutput([]byte("::clean\n")).clean {
		t.Fatal("::clean not seen")
	}
}

// The script is valid bash, shellcheck-clean, and knows where the version map installs each
// package (its dest_of table must follow candi/version_map.yml).
func TestCleanupScript(t *testing.T) {
	script, err := Script(candi.FS)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-n")
	cmd.Stdin = bytes.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	if _, err := exec.LookPath("shellcheck"); err == nil {
		cmd := exec.Command("shellcheck", "-s", "bash", "-")
		cmd.Stdin = bytes.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("shellcheck: %v\n%s", err, out)
		}
	}
	vm, err := config.LoadVersionMap(candi.FS)
	if err != nil {
		t.Fatal(err)
	}
	table := map[string]string{}
	m := regexp.MustCompile(`(?s)dest_of\(\) \{.*?esac`).Find(script)
	for _, c := range regexp.MustCompile(`(?m)^\s*([a-z*-]+)\) echo (\S+) ;;`).FindAllSubmatch(m, -1) {
		table[string(c[1])] = string(c[2])
	}
	if len(table) == 0 {
		t.Fatal("no dest_of table found in the cleanup script")
	}
	for minor, rel := range vm.Kubernetes {
		for name, p := range rel.Packages {
			want := p.Dest
			if want == "" {
				continue
			}
			got, ok := table[name]
			if !ok {
				got = table["*"]
			}
			if got != want {
				t.Errorf("version map %s: package %s goes to %s, the cleanup script looks in %s", minor, name, want, got)
			}
		}
	}
}

package sshcheck_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/logging"
	"github.com/dhctl-dev/dhctl/internal/operations/sshcheck"
	"github.com/dhctl-dev/dhctl/internal/session"
	"github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/internal/ssh/sshtest"
)

// The clients come from the session, built from flags and an SSHConfig document exactly as for
// every other command.
func TestCheckReportsEveryHostThroughBastion(t *testing.T) {
	lab := sshtest.NewLab(t, 3, sshtest.Options{})
	bastion, h1, h2 := lab.Hosts[0], lab.Hosts[1], lab.Hosts[2]
	user := lab.AddUser(t, sshtest.SudoPassword)
	root := t.TempDir()
	open := func(hosts ...string) *session.Session {
		s, err := session.Open(context.Background(), session.Options{
			StateRoot: root, ClusterName: "c", Command: "test", LogFormat: logging.FormatText,
			Config: &config.Cluster{SSHConfig: &config.SSHConfig{SudoPassword: user.Password}},
			SSH: session.SSHOptions{Hosts: hosts, User: user.Name, KeyFiles: []string{user.Key}, BastionHost: bastion.Addr,
				KnownHostsFile: "none", DialContext: lab.DialContext},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	check := func(s *session.Session, out *bytes.Buffer) ([]sshcheck.HostReport, error) {
		clients, err := s.Clients(s.Hosts())
		if err != nil {
			t.Fatal(err)
		}
		defer session.CloseClients(clients)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return sshcheck.CheckClients(ctx, clients, sshcheck.FanoutOptions{}, out)
	}

	var out bytes.Buffer
	s := open(h1.Addr, h2.Addr+":22")
	reports, err := check(s, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Logf("first run:\n%s", out.String())
	for i, r := range reports {
		if !r.NewlyPinned || r.Sudo != ssh.SudoWithPassword || !strings.Contains(r.OS, "Debian") || !strings.HasPrefix(r.Kernel, "Linux ") {
			t.Errorf("host %d report: %+v", i, r)
		}
	}
	for _, want := range []string{user.Name + "@" + h1.Addr + ":22", user.Name + "@" + h2.Addr + ":22", "newly pinned SHA256:", "with password", "bastion " + bastion.Addr + ":22: host key newly pinned", "all 2 hosts reachable"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), user.Password) {
		t.Fatal("sudo password printed")
	}
	s.Close()

	// Second run: keys already pinned in the session's state dir. A refusing host fails alone;
	// the others are still reported.
	out.Reset()
	s = open(h1.Addr, h2.Addr+":22", h1.Addr+":2222")
	reports, err = check(s, &out)
	t.Logf("second run:\n%s", out.String())
	if err == nil || !strings.Contains(err.Error(), "1 of 3 hosts") || !strings.Contains(err.Error(), h1.Addr+":2222") {
		t.Fatalf("want a failure for the refusing host only, got %v", err)
	}
	if reports[0].NewlyPinned || reports[0].HostKey.Source != ssh.HostKeyPinned || reports[1].Sudo != ssh.SudoWithPassword {
		t.Errorf("second run reports: %+v", reports[:2])
	}
}

func TestNoClients(t *testing.T) {
	if _, err := sshcheck.CheckClients(context.Background(), nil, sshcheck.FanoutOptions{}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "no hosts") {
		t.Errorf("no clients: %v", err)
	}
}

package preflight

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/internal/exitcode"
	"github.com/dhctl-dev/dhctl/internal/inventory"
	"github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/internal/ssh/sshtest"
)

// Run against real sshd hosts (sshtest: each an sshd in its own network namespace on this
// machine, so they share this machine's files and hostname): users with and without sudo, a
// clock that disagrees, and two hosts with the same hostname.
func TestRunOverSSH(t *testing.T) {
	lab := sshtest.NewLab(t, 2, sshtest.Options{})
	withPassword := lab.AddUser(t, sshtest.SudoPassword)
	noSudo := lab.AddUser(t, sshtest.SudoNone)
	state := t.TempDir()
	client := func(h *sshtest.Host, u *sshtest.User, sudoPassword string) *ssh.Client {
		c, err := ssh.New(ssh.Config{
			Host: h.Addr, Port: h.Port, User: u.Name,
			Auth:           ssh.Auth{Keys: []ssh.KeyFile{{Path: u.Key}}},
			SudoPassword:   sudoPassword,
			HostKeys:       ssh.HostKeyPolicy{StateDir: filepath.Join(state, u.Name)},
			ConnectTimeout: 5 * time.Second,
			DialContext:    lab.DialContext,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	h1, h2 := lab.Hosts[0], lab.Hosts[1]
	var cidrs []netip.Prefix
	for _, h := range lab.Hosts {
		cidrs = append(cidrs, netip.PrefixFrom(netip.MustParseAddr(h.Addr), 32))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	report, err := Run(ctx, Options{
		Hosts: []Host{
			{client(h1, withPassword, withPassword.Password), inventory.Master},
			{client(h2, noSudo, ""), inventory.Worker},
		},
		Inputs: Inputs{InternalNetworkCIDRs: cidrs},
		Skip:   []string{CheckRegistry, CheckCPU, CheckMemory, CheckDisk}, // this machine's sizes are not the point here
		// The operator's clock is a minute behind the hosts'.
		Now: func() time.Time { return time.Now().Add(-time.Minute) },
	})
	if err == nil {
		t.Fatal("no error, want failures")
	}
	var table strings.Builder
	report.Write(&table)
	t.Logf("report:\n%s", table.String())
	got := map[string]Result{}
	for _, r := range report.Rows {
		got[r.Host+" "+r.Check] = r.Result
	}
	t1, t2 := withPassword.Name+"@"+h1.Addr+":22", noSudo.Name+"@"+h2.Addr+":22"
	for _, want := range []struct {
		host, check string
		status      Status
		fragment    string
	}{
		{t1, CheckSSH, StatusOK, "first master"},
		{t1, CheckSudo, StatusOK, string(ssh.SudoWithPassword)},
		{t1, CheckOS, StatusOK, "x86_64"},
		{t1, CheckTimeDrift, StatusFailed, "ahead of this machine's"},
		{t1, CheckHostname, StatusFailed, "also the hostname of " + t2},
		{t1, CheckInternalNetwork, StatusOK, h1.Addr},
		{t1, CheckRegistry, StatusSkipped, "--preflight-skip"},
		{t1, CheckCPU, StatusSkipped, ""},
		{t2, CheckSSH, StatusOK, "worker"},
		{t2, CheckSudo, StatusFailed, ""},
		{t2, CheckOS, StatusOK, "x86_64"}, // facts gathered without sudo
		{t2, CheckInternalNetwork, StatusOK, h2.Addr},
	} {
		r, found := got[want.host+" "+want.check]
		if !found {
			t.Errorf("no row for %s on %s", want.check, want.host)
			continue
		}
		expect(t, want.check+" on "+want.host, r, want.status, want.fragment)
	}
	if _, found := got[t2+" "+CheckRegistry]; found {
		t.Error("registry row for a host other than the first master")
	}
	for _, want := range []string{"time-drift on " + t1, "hostname on " + t1, "sudo on " + t2} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), withPassword.Password) {
		t.Error("the sudo password reached the error")
	}

	// A wrong sudo password is named as such.
	report, _ = Run(ctx, Options{
		Hosts: []Host{{client(h1, withPassword, "wrong-password"), inventory.Master}},
		Skip:  []string{CheckRegistry},
	})
	for _, r := range report.Rows {
		if r.Check == CheckSudo {
			expect(t, "wrong sudo password", r.Result, StatusFailed, "sudo refused the given password")
		}
	}
}

func TestRunNeedsHosts(t *testing.T) {
	if _, err := Run(context.Background(), Options{}); err == nil || !strings.Contains(err.Error(), "no hosts") {
		t.Errorf("err %v", err)
	}
	if _, err := Run(context.Background(), Options{Hosts: []Host{{}}, Skip: []string{"nope"}}); err == nil || !strings.Contains(err.Error(), "valid names") {
		t.Errorf("err %v", err)
	}
}

// Checks the operator cut short are not failures of the machines: the error says the run was
// interrupted (exit 3), not that checks failed and need fixing.
func TestInterruptedRunIsNotReportedAsFailedChecks(t *testing.T) {
	lab := sshtest.NewLab(t, 1, sshtest.Options{})
	h := lab.Hosts[0]
	c, err := ssh.New(ssh.Config{Host: h.Addr, Port: h.Port, User: "root",
		Auth:     ssh.Auth{Keys: []ssh.KeyFile{{Path: lab.RootKey}}},
		HostKeys: ssh.HostKeyPolicy{StateDir: t.TempDir()}, DialContext: lab.DialContext})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(exitcode.Aborted(errors.New("received interrupt")))
	_, err = Run(ctx, Options{Hosts: []Host{{c, inventory.Master}}, Skip: []string{CheckRegistry}})
	if err == nil || strings.Contains(err.Error(), "check(s) failed") || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("interrupted run: %v", err)
	}
	if exitcode.ExitCode(err) != exitcode.AbortedByUser {
		t.Errorf("exit %d, want 3", exitcode.ExitCode(err))
	}
}

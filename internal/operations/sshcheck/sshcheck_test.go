package sshcheck_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/internal/operations/sshcheck"
	"github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/internal/ssh/sshtest"
)

func TestRunReportsEveryHostThroughBastion(t *testing.T) {
	lab := sshtest.NewLab(t, 3, sshtest.Options{})
	bastion, h1, h2 := lab.Hosts[0], lab.Hosts[1], lab.Hosts[2]
	user := lab.AddUser(t, sshtest.SudoPassword)
	state := filepath.Join(t.TempDir(), "cluster-state")
	opts := sshcheck.Options{
		Hosts:              []string{h1.Addr, h2.Addr + ":22"},
		User:               user.Name,
		PrivateKeys:        []ssh.KeyFile{{Path: user.Key}},
		BastionHost:        bastion.Addr,
		SudoPassword:       user.Password,
		StateDir:           state,
		UserKnownHostsFile: "none",
		DialContext:        lab.DialContext,
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var out bytes.Buffer
	reports, err := sshcheck.Check(ctx, opts, &out)
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

	// Second run: keys already pinned. A refusing host fails alone; the others are still reported.
	out.Reset()
	opts.Hosts = append(opts.Hosts, h1.Addr+":2222")
	reports, err = sshcheck.Check(ctx, opts, &out)
	t.Logf("second run:\n%s", out.String())
	if err == nil || !strings.Contains(err.Error(), "1 of 3 hosts") || !strings.Contains(err.Error(), h1.Addr+":2222") {
		t.Fatalf("want a failure for the refusing host only, got %v", err)
	}
	if reports[0].NewlyPinned || reports[0].HostKey.Source != ssh.HostKeyPinned || reports[1].Sudo != ssh.SudoWithPassword {
		t.Errorf("second run reports: %+v", reports[:2])
	}
}

func TestOptionsErrors(t *testing.T) {
	ctx := context.Background()
	var out bytes.Buffer
	for _, tc := range []struct {
		opts sshcheck.Options
		want string
	}{
		{sshcheck.Options{User: "root"}, "no hosts"},
		{sshcheck.Options{Hosts: []string{"h"}, User: "root", Password: "x"}, "state dir"},
		{sshcheck.Options{Hosts: []string{"h"}, User: "root", Password: "x", StateDir: "/tmp/x", HostKeyChecking: "maybe"}, "want tofu, strict or off"},
		{sshcheck.Options{Hosts: []string{"h:99999"}, User: "root", Password: "x", StateDir: "/tmp/x"}, "1-65535"},
		{sshcheck.Options{Hosts: []string{"h"}, User: "root", StateDir: "/tmp/x"}, "no authentication method"},
	} {
		if err := sshcheck.Run(ctx, tc.opts, &out); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: want error containing %q, got %v", tc.opts, tc.want, err)
		}
	}
}

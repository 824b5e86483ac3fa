package abort

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/dhctl-dev/dhctl/internal/cleanup"
	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/internal/ssh/sshtest"
	"github.com/dhctl-dev/dhctl/internal/state"
)

// A cleanup that speaks the script's protocol without touching the host.
const fakeCleanup = `#!/bin/bash
echo "::did stopped kubelet.service"
echo "::clean"
`

// The hosts to clean are the recorded ones plus those given; one that is down stays recorded
// (so a re-run finds it) and fails the run, the others are cleaned; once it is back, a re-run
// cleans it and the local state forgets the cluster.
func TestRunCleansRecordedAndGivenHostsAndKeepsTheUnreachable(t *testing.T) {
	lab := sshtest.NewLab(t, 3, sshtest.Options{})
	dir, err := state.Open(context.Background(), t.TempDir(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	l := clusterstate.NewLocal(dir)
	recorded, down, given := lab.Hosts[0], lab.Hosts[1], lab.Hosts[2]
	for _, h := range []*sshtest.Host{recorded, down} {
		if err := l.RecordHost(h.Addr, "master", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.SaveJoin(clusterstate.Join{MasterIP: recorded.Addr}); err != nil {
		t.Fatal(err)
	}
	clients := func(hosts []string) ([]*ssh.Client, error) {
		var out []*ssh.Client
		for _, h := range hosts {
			c, err := ssh.New(ssh.Config{Host: h, Port: 22, User: "root",
				Auth:           ssh.Auth{Keys: []ssh.KeyFile{{Path: lab.RootKey}}},
				HostKeys:       ssh.HostKeyPolicy{StateDir: filepath.Join(t.TempDir(), "pins")},
				ConnectTimeout: 2 * time.Second, ReconnectAttempts: 1, DialContext: lab.DialContext})
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		return out, nil
	}
	candi := fstest.MapFS{cleanup.ScriptPath: {Data: []byte(fakeCleanup)}}
	var asked []string
	o := Options{Name: "c1", State: l, Candi: candi, Hosts: []string{given.Addr, recorded.Addr}, Clients: clients,
		ForceFlag: "force", Confirm: func(_ string, hosts []string) error { asked = hosts; return nil }}
	down.Stop()
	var out bytes.Buffer
	o.Out = &out
	err = Run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), down.Addr) {
		t.Fatalf("one host down: %v\n%s", err, out.String())
	}
	if strings.Join(asked, " ") != strings.Join([]string{recorded.Addr, down.Addr, given.Addr}, " ") {
		t.Errorf("confirmation asked for %v: recorded hosts first, then the given ones, once each", asked)
	}
	left, _ := l.TouchedHosts()
	if len(left) != 1 || left[0].Host != down.Addr {
		t.Errorf("after a partial abort the state lists %+v, want only %s", left, down.Addr)
	}
	if j, _ := l.Join(); j.MasterIP == "" {
		t.Error("a partial abort reset the state")
	}
	for _, want := range []string{recorded.Addr + ": cleaned", given.Addr + ": cleaned", down.Addr + ": unreachable"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}

	// A re-run without --ssh-host finds the machine still to clean in the state.
	o.Hosts = nil
	if err := Run(context.Background(), o); err == nil || strings.Join(asked, " ") != down.Addr {
		t.Errorf("re-run: %v, asked for %v, want only %s", err, asked, down.Addr)
	}
	// Once every machine is cleaned the local state forgets the cluster (the machine that is down
	// is dropped here by hand: the simulated host cannot come back).
	if _, err := l.ForgetHosts([]string{down.Addr}, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := l.RecordHost(recorded.Addr, "master", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := l.SaveJoin(clusterstate.Join{MasterIP: recorded.Addr}); err != nil {
		t.Fatal(err)
	}
	if err := Run(context.Background(), o); err != nil {
		t.Fatalf("all reachable: %v", err)
	}
	if j, _ := l.Join(); j.MasterIP != "" {
		t.Error("the state still holds the removed cluster's join data")
	}
	// Nothing is left to clean, and a finished cluster is refused.
	if err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "no hosts to clean") {
		t.Errorf("nothing recorded: %v", err)
	}
	if err := l.MarkCompleted(time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("finished cluster: %v", err)
	}
}

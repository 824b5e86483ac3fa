package rig

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/internal/testctx"
)

// assertNoLeftovers fails if anything of rig r survived Close.
func assertNoLeftovers(t *testing.T, r *Rig, cgroups []string) {
	t.Helper()
	if _, err := os.Stat(r.Dir()); !os.IsNotExist(err) {
		t.Errorf("state directory %s still exists (err %v)", r.Dir(), err)
	}
	if _, err := os.Stat(r.NetNS()); !os.IsNotExist(err) {
		t.Errorf("network namespace %s still exists (err %v)", r.NetNS(), err)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), r.Dir()) {
		t.Errorf("mounts under %s remain", r.Dir())
	}
	for _, c := range cgroups {
		for _, d := range []string{c, filepath.Dir(c)} {
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				t.Errorf("cgroup %s still exists", d)
			}
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmd, _ := os.ReadFile(p)
		if strings.Contains(string(cmd), r.Dir()) || strings.Contains(string(cmd), r.netns) {
			t.Errorf("process %s still runs: %q", p, strings.ReplaceAll(string(cmd), "\x00", " "))
		}
	}
}

func TestMachines(t *testing.T) {
	ctx, cancel := testctx.New(t, 20*time.Minute)
	defer cancel()
	r, err := New(ctx, Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	var cgroups []string
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertNoLeftovers(t, r, cgroups)
	})

	start := time.Now()
	ms, err := r.StartMachines(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("2 machines boot to SSH in %v", time.Since(start))
	for _, m := range r.Machines() {
		cgroups = append(cgroups, m.cgroups...)
	}
	for _, m := range ms {
		out, err := m.Run(ctx, "hostname; systemctl is-system-running --wait || true; ip route show default", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out, m.Name+"\n") {
			t.Errorf("%s: hostname answered %q", m.Name, out)
		}
		if !strings.Contains(out, "default via "+r.BridgeAddress().String()) {
			t.Errorf("%s: no default route via the bridge: %q", m.Name, out)
		}
		t.Logf("%s: %s", m.Name, out)
	}
	// The machinectl-free way in: nsenter into the machine's init.
	leader, err := ms[0].Leader()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nsenter", "--target", strconv.Itoa(leader), "--all", "hostname").CombinedOutput(); err != nil || string(out) != ms[0].Name+"\n" {
		t.Errorf("nsenter into %s (leader %d): %q %v", ms[0].Name, leader, out, err)
	}
	if ms[0].HostKey.Type() != "ssh-ed25519" || string(ms[0].HostKey.Marshal()) == string(ms[1].HostKey.Marshal()) {
		t.Errorf("machines must have distinct host keys")
	}
	// The namespace has no way out: its only route is the bridge's subnet,
	// and it forwards nothing.
	routes, err := exec.Command("ip", "-n", r.netns, "route", "show", "table", "all").CombinedOutput()
	if err != nil {
		t.Fatalf("ip route: %v\n%s", err, routes)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(routes)), "\n") {
		if strings.HasPrefix(line, "default") || (!strings.Contains(line, r.Prefix().String()) && !strings.Contains(line, "table local") && !strings.Contains(line, r.BridgeAddress().String()) && !strings.HasPrefix(line, "multicast") && !strings.Contains(line, "fe80::") && !strings.Contains(line, "ff00::")) {
			t.Errorf("unexpected route in the rig's namespace: %s", line)
		}
	}
	if fwd, err := exec.Command("ip", "netns", "exec", r.netns, "cat", "/proc/sys/net/ipv4/ip_forward").Output(); err != nil || strings.TrimSpace(string(fwd)) != "0" {
		t.Errorf("the rig's namespace forwards packets (ip_forward %q, %v)", fwd, err)
	}
	// Machine to machine over the bridge.
	probe := fmt.Sprintf("timeout 5 bash -c '</dev/tcp/%s/22' && echo open", ms[1].Address)
	if out, err := ms[0].Run(ctx, probe, nil); err != nil || strings.TrimSpace(out) != "open" {
		t.Fatalf("%s cannot reach %s: %q %v", ms[0].Name, ms[1].Name, out, err)
	}

	// A listener of the test process inside the namespace is reachable from
	// machines (how a test serves something to them).
	l, err := r.Listen("tcp", netip.AddrPortFrom(r.BridgeAddress(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			accepted <- err.Error()
			return
		}
		defer c.Close()
		buf := make([]byte, 5)
		io.ReadFull(c, buf)
		accepted <- string(buf)
	}()
	if _, err := ms[1].Run(ctx, fmt.Sprintf("echo hello > /dev/tcp/%s/%d", r.BridgeAddress(), l.Addr().(*net.TCPAddr).Port), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-accepted:
		if got != "hello" {
			t.Errorf("listener in the namespace got %q, want hello", got)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("listener in the namespace accepted nothing within 10s")
	}

	if err := r.KillMachine(ms[1].Name); err != nil {
		t.Fatal(err)
	}
	if r.Reachable(ctx, ms[1].Name) || ms[1].Running() {
		t.Fatalf("%s still reachable after KillMachine", ms[1].Name)
	}
	if out, err := ms[0].Run(ctx, probe, nil); err == nil {
		t.Fatalf("%s still reaches killed %s: %q", ms[0].Name, ms[1].Name, out)
	}
	if !r.Reachable(ctx, ms[0].Name) {
		t.Fatalf("%s gone although only %s was killed", ms[0].Name, ms[1].Name)
	}
}

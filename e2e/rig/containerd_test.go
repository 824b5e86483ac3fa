package rig

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/artifacts"
	"github.com/dhctl-dev/dhctl/e2e/images"
	"github.com/dhctl-dev/dhctl/e2e/internal/testctx"
)

// TestThreeMachinesContainerdFromRegistry is the rig's end-to-end proof:
// three machines, containerd installed on one from the registry's packages,
// the pause image pulled over TLS with basic auth and run, machine-to-machine
// connectivity, one machine killed, and nothing left behind.
func TestThreeMachinesContainerdFromRegistry(t *testing.T) {
	ctx, cancel := testctx.New(t, 20*time.Minute)
	defer cancel()
	r, err := New(ctx, Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	var cgroups []string
	t.Cleanup(func() {
		start := time.Now()
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		t.Logf("Close took %v", time.Since(start))
		assertNoLeftovers(t, r, cgroups)
	})
	reg, err := r.StartRegistry(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dst := images.Registry{Transport: reg.Transport(), User: reg.User, Password: reg.Password}
	imagesRepo := reg.Host + "/dhctl"

	// Boot while the artifacts are built (or found in the cache) and pushed.
	type bootResult struct {
		ms  []*Machine
		err error
	}
	booted := make(chan bootResult, 1)
	go func() {
		ms, err := r.StartMachines(ctx, 3)
		booted <- bootResult{ms, err}
	}()
	start := time.Now()
	pub, err := artifacts.Publish(ctx, artifacts.Options{Logf: t.Logf}, dst, imagesRepo, artifacts.Selection{
		Images:   []string{"pause"},
		Packages: []string{"containerd", "runc"},
	})
	boot := <-booted
	for _, m := range r.Machines() {
		cgroups = append(cgroups, m.cgroups...)
	}
	if err != nil {
		t.Fatal(err)
	}
	if boot.err != nil {
		t.Fatal(boot.err)
	}
	t.Logf("3 machines up and artifacts published in %v", time.Since(start))
	ms := boot.ms
	node := ms[0]

	// Install containerd and runc on node-1 from the registry's packages,
	// the way dhctl hands packages to nodes: fetched by the installer, then
	// shipped over SSH.
	start = time.Now()
	var debs []string
	for _, p := range []string{"runc", "containerd"} {
		files, err := images.FetchPackage(ctx, pub.Packages[p].Ref, dst, filepath.Join(t.TempDir(), p))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			remote := "/root/packages/" + filepath.Base(f)
			if err := node.WriteFile(ctx, remote, data, 0o644); err != nil {
				t.Fatal(err)
			}
			debs = append(debs, remote)
		}
	}
	if _, err := node.Run(ctx, "DEBIAN_FRONTEND=noninteractive dpkg -i "+strings.Join(debs, " ")+" && systemctl is-active containerd", nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("containerd installed from the registry on %s in %v", node.Name, time.Since(start))

	// Trust the registry's CA through containerd's hosts directory, and
	// keep the password in a 0600 file so no command line carries it.
	hostsDir := "/etc/containerd/certs.d/" + reg.Host
	hostsToml := fmt.Sprintf("server = \"https://%s\"\n\n[host.\"https://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"%s/ca.crt\"\n", reg.Host, reg.Host, hostsDir)
	for path, data := range map[string][]byte{
		hostsDir + "/ca.crt":     reg.CACert,
		hostsDir + "/hosts.toml": []byte(hostsToml),
		"/root/.registry-auth":   []byte(reg.User + ":" + reg.Password),
	} {
		if err := node.WriteFile(ctx, path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pauseRef := pub.Images["pause"].Ref
	start = time.Now()
	pull := fmt.Sprintf(`ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d --user "$(cat /root/.registry-auth)" %s`, pauseRef)
	if _, err := node.Run(ctx, pull, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Run(ctx, "ctr -n k8s.io run -d "+pauseRef+" rig-pause", nil); err != nil {
		t.Fatal(err)
	}
	tasks, err := node.Run(ctx, "ctr -n k8s.io task ls", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tasks, "rig-pause") || !strings.Contains(tasks, "RUNNING") {
		t.Fatalf("pause container not running on %s:\n%s", node.Name, tasks)
	}
	t.Logf("pause pulled (TLS + basic auth) and running on %s after %v", node.Name, time.Since(start))
	// Pulling without credentials must fail: the registry really checks.
	if _, err := node.Run(ctx, "ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d "+pauseRef, nil); err == nil || !strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
		t.Errorf("pull without credentials: %v, want an unauthorized error", err)
	}
	// The pause program stops cleanly on SIGTERM.
	if _, err := node.Run(ctx, "ctr -n k8s.io task kill rig-pause && for i in $(seq 50); do ctr -n k8s.io task ls | grep rig-pause | grep -q STOPPED && exit 0; sleep 0.1; done; exit 1", nil); err != nil {
		t.Errorf("pause did not stop on SIGTERM: %v", err)
	}

	// Machine-to-machine connectivity over the bridge.
	probe := func(from, to *Machine) error {
		out, err := from.Run(ctx, fmt.Sprintf("timeout 5 bash -c '</dev/tcp/%s/22' && echo open", to.Address), nil)
		if err != nil || strings.TrimSpace(out) != "open" {
			return fmt.Errorf("%s cannot reach %s at %s: %q %v", from.Name, to.Name, to.Address, out, err)
		}
		return nil
	}
	for _, pair := range [][2]*Machine{{ms[0], ms[1]}, {ms[0], ms[2]}, {ms[2], ms[1]}} {
		if err := probe(pair[0], pair[1]); err != nil {
			t.Fatal(err)
		}
	}

	// Kill one machine: it is gone for the others and for the test.
	victim := ms[2]
	if err := r.KillMachine(victim.Name); err != nil {
		t.Fatal(err)
	}
	if victim.Running() || r.Reachable(ctx, victim.Name) {
		t.Fatalf("%s still running or reachable after KillMachine", victim.Name)
	}
	if err := probe(ms[0], victim); err == nil {
		t.Fatalf("%s still reaches killed %s", ms[0].Name, victim.Name)
	}
	if err := probe(ms[0], ms[1]); err != nil {
		t.Fatalf("after killing %s: %v", victim.Name, err)
	}
	if out, err := ms[1].Run(ctx, "hostname", nil); err != nil || !bytes.Equal([]byte(out), []byte(ms[1].Name+"\n")) {
		t.Fatalf("%s after killing %s: %q %v", ms[1].Name, victim.Name, out, err)
	}
}

package infra

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"

	// The provider logs in to the REST API (tags) and the storage policy endpoint too.
	_ "github.com/vmware/govmomi/pbm/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator"

	"github.com/dhctl-dev/dhctl/e2e/artifacts"
)

// testPassword must never reach the log (the simulator accepts any).
const testPassword = "vsphere-password-7391"

// memStore is a StateStore in memory, counting saves.
type memStore struct {
	states map[string][]byte
	saves  int
}

func (m *memStore) TerraformState(step string) ([]byte, error) { return m.states[step], nil }
func (m *memStore) SaveTerraformState(step string, data []byte) error {
	m.states[step] = append([]byte(nil), data...)
	m.saves++
	return nil
}
func (m *memStore) RemoveTerraformState(step string) error { delete(m.states, step); return nil }

// vmModule is a small root module: one VM cloned from a simulator template, in its own folder.
const vmModule = `
terraform {
  required_providers {
    vsphere = { source = "hashicorp/vsphere", version = ">= 1.26.0" }
  }
}
variable "server" { type = string }
variable "name" { type = string }
variable "memory" { type = number }
variable "template" { type = string }
variable "password" {
  type      = string
  sensitive = true
}
provider "vsphere" {
  vsphere_server       = var.server
  user                 = "user"
  password             = var.password
  allow_unverified_ssl = true
}
data "vsphere_datacenter" "dc" { name = "DC0" }
data "vsphere_datastore" "ds" {
  name          = "LocalDS_0"
  datacenter_id = data.vsphere_datacenter.dc.id
}
data "vsphere_resource_pool" "pool" {
  name          = "DC0_H0/Resources"
  datacenter_id = data.vsphere_datacenter.dc.id
}
data "vsphere_network" "net" {
  name          = "VM Network"
  datacenter_id = data.vsphere_datacenter.dc.id
}
data "vsphere_virtual_machine" "template" {
  name          = var.template
  datacenter_id = data.vsphere_datacenter.dc.id
}
resource "vsphere_virtual_machine" "vm" {
  name             = var.name
  resource_pool_id = data.vsphere_resource_pool.pool.id
  datastore_id     = data.vsphere_datastore.ds.id
  num_cpus         = 1
  memory           = var.memory
  guest_id         = data.vsphere_virtual_machine.template.guest_id
  network_interface { network_id = data.vsphere_network.net.id }
  disk {
    label = "disk0"
    size  = data.vsphere_virtual_machine.template.disks.0.size
  }
  clone { template_uuid = data.vsphere_virtual_machine.template.id }
  wait_for_guest_net_timeout = 0
  wait_for_guest_ip_timeout  = 0
  lifecycle { ignore_changes = [swap_placement_policy] }
}
output "name" { value = vsphere_virtual_machine.vm.name }
`

type lab struct {
	server  string
	vim     *vim25.Client
	engines map[string]string
	mirror  string
}

func startLab(t *testing.T) *lab {
	t.Helper()
	ctx := context.Background()
	bins, err := artifacts.Build(ctx, artifacts.Options{Logf: t.Logf}, artifacts.OpenTofu, artifacts.Terraform)
	if err != nil {
		t.Fatal(err)
	}
	mirror, err := artifacts.ProviderMirror(ctx, artifacts.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	m := simulator.VPX()
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	m.Service.RegisterEndpoints = true
	m.Service.TLS = new(tls.Config) // the provider speaks only HTTPS
	srv := m.Service.NewServer()    // 127.0.0.1, a random port, TLS
	t.Cleanup(func() { srv.Close(); m.Remove() })
	c, err := vimClient(ctx, srv)
	if err != nil {
		t.Fatal(err)
	}
	return &lab{server: srv.URL.Host, vim: c, engines: map[string]string{"tofu": bins["tofu"], "terraform": bins["terraform"]}, mirror: mirror}
}

func vimClient(ctx context.Context, srv *simulator.Server) (*vim25.Client, error) {
	c, err := govmomi.NewClient(ctx, srv.URL, true)
	if err != nil {
		return nil, err
	}
	return c.Client, nil
}

// vms counts the simulator's VMs named name.
func (l *lab) vms(t *testing.T, name string) int {
	t.Helper()
	list, err := l.finder(t).VirtualMachineList(context.Background(), name)
	if err != nil {
		if _, ok := err.(*find.NotFoundError); ok {
			return 0
		}
		t.Fatal(err)
	}
	return len(list)
}

// vmMemory is the configured memory of the VM named name (0 while there is none).
func (l *lab) vmMemory(t *testing.T, name string) int32 {
	vm, err := l.finder(t).VirtualMachine(context.Background(), name)
	if err != nil {
		return 0
	}
	var o mo.VirtualMachine
	if err := vm.Properties(context.Background(), vm.Reference(), []string{"config.hardware.memoryMB"}, &o); err != nil || o.Config == nil {
		return 0
	}
	return o.Config.Hardware.MemoryMB
}

func (l *lab) finder(t *testing.T) *find.Finder {
	f := find.NewFinder(l.vim, true)
	dc, err := f.Datacenter(context.Background(), "DC0")
	if err != nil {
		t.Fatal(err)
	}
	return f.SetDatacenter(dc)
}

func (l *lab) runner(t *testing.T, engine string, store StateStore, work string, log ...*slog.Logger) *Runner {
	t.Helper()
	e, err := Find(context.Background(), FindOptions{Binary: l.engines[engine]})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Engine: e, PluginDir: l.mirror, Sources: []string{"hashicorp/vsphere"}, WorkRoot: work, States: store}
	if len(log) > 0 {
		o.Log = log[0]
	}
	r, err := NewRunner(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func step(l *lab, name string, memory int, template string) Step {
	return Step{Name: name, Module: fstest.MapFS{"main.tf": {Data: []byte(vmModule)}},
		Vars: map[string]any{"server": l.server, "name": name, "memory": memory, "template": template, "password": testPassword}}
}

// Both engines through the same runner: create, no change on a second plan, a memory change in
// place, a template change destructive (plan only), destroy back to nothing.
func TestStepLifecycleWithBothEngines(t *testing.T) {
	l := startLab(t)
	for _, engine := range []string{"tofu", "terraform"} {
		t.Run(engine, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			store := &memStore{states: map[string][]byte{}}
			var logBuf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			r := l.runner(t, engine, store, t.TempDir(), log)
			name := "vm-" + engine
			defer func() {
				if strings.Contains(logBuf.String(), testPassword) || logBuf.Len() == 0 {
					t.Errorf("the debug log (%d bytes) holds the provider password, or nothing", logBuf.Len())
				}
			}()
			plan, err := r.Plan(ctx, step(l, name, 1024, "DC0_H0_VM0"), []string{"vsphere_virtual_machine"})
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.Changes) != 1 || plan.Changes[0].Action != Create || plan.Status() != "OutOfSync" {
				t.Fatalf("first plan: %+v", plan.Changes)
			}
			out, err := r.Apply(ctx, plan)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := out.String("name"); got != name || l.vms(t, name) != 1 {
				t.Fatalf("output name %q, %d VMs", got, l.vms(t, name))
			}
			if len(store.states[name]) == 0 {
				t.Fatal("no state saved in the store")
			}
			// The saved state alone says the same (a state dir restored from the cluster's copy).
			if saved, err := StateOutputs(store.states[name]); err != nil || !reflect.DeepEqual(compactJSON(t, saved), compactJSON(t, out)) || len(out) == 0 {
				t.Fatalf("outputs of the saved state: %v\n%s\nwant\n%s", err, compactJSON(t, saved), compactJSON(t, out))
			}
			// The working directory may be lost (another machine, a wiped cache): the stored state
			// is what counts.
			r = l.runner(t, engine, store, t.TempDir())
			if plan, err = r.Plan(ctx, step(l, name, 1024, "DC0_H0_VM0"), []string{"vsphere_virtual_machine"}); err != nil || plan.HasChanges() {
				t.Fatalf("second plan from the stored state: %v %+v", err, plan)
			}
			if plan, err = r.Plan(ctx, step(l, name, 2048, "DC0_H0_VM0"), []string{"vsphere_virtual_machine"}); err != nil ||
				len(plan.Changes) != 1 || plan.Changes[0].Action != Update || plan.Changes[0].Destructive {
				t.Fatalf("memory change: %v %+v", err, plan)
			}
			// (Not applied: the simulator answers the provider's reconfigure with AlreadyUpgradedFault.)
			plan, err = r.Plan(ctx, step(l, name, 1024, "DC0_H0_VM1"), []string{"vsphere_virtual_machine"})
			if err != nil || len(plan.Destructive()) != 1 || plan.Status() != "DestructiveOutOfSync" || !strings.Contains(strings.Join(plan.Changes[0].ReplacePaths, ","), "template_uuid") {
				t.Fatalf("template change: %v %+v", err, plan)
			}
			if err := r.Destroy(ctx, step(l, name, 1024, "DC0_H0_VM0")); err != nil {
				t.Fatal(err)
			}
			if n := l.vms(t, name); n != 0 || store.states[name] != nil {
				t.Fatalf("after destroy: %d VMs, state %q", n, store.states[name])
			}
		})
	}
}

// An engine killed (kill -9) in the middle of an apply saves nothing for the first 20 s; the VM
// exists anyway. A re-run that finds it and imports it makes no second one.
func TestKilledApplyRecoversWithoutADuplicate(t *testing.T) {
	l := startLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	store := &memStore{states: map[string][]byte{}}
	work := t.TempDir()
	r := l.runner(t, "tofu", store, work)
	s := step(l, "vm-killed", 1024, "DC0_H0_VM0")
	plan, err := r.Plan(ctx, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Kill the engine once the VM is made (cloned and reconfigured: 1024 MiB, the template has
	// 32), before the engine writes any state (it persists every 20 s or at the end).
	go func() {
		for ctx.Err() == nil {
			if l.vmMemory(t, "vm-killed") == 1024 {
				killEngine(t, work)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	if _, err := r.Apply(ctx, plan); err == nil {
		t.Fatal("the killed apply reported success")
	}
	if n := l.vms(t, "vm-killed"); n != 1 {
		t.Fatalf("%d VMs after the kill, want 1", n)
	}
	// What the provider's recovery does: find the VM by its name and import it.
	vms, err := l.finder(t).VirtualMachineList(ctx, "vm-killed")
	if err != nil || len(vms) != 1 {
		t.Fatal(err)
	}
	if err := r.Import(ctx, s, "vsphere_virtual_machine.vm", vms[0].InventoryPath); err != nil {
		t.Fatal(err)
	}
	plan, err = r.Plan(ctx, s, []string{"vsphere_virtual_machine"})
	if err != nil {
		t.Fatal(err)
	}
	// The VM is the state's now: nothing is created again (import leaves attributes such as
	// keep_on_remove to settle, an update in place; the simulator cannot apply reconfigures).
	for _, c := range plan.Changes {
		if c.Action == Create || c.Action == Replace {
			t.Errorf("after the import the plan still makes a VM: %+v", c)
		}
	}
	if n := l.vms(t, "vm-killed"); n != 1 {
		t.Fatalf("%d VMs after the re-run, want 1", n)
	}
	// Without the import the same plan would clone a second VM of that name.
	store.states["vm-killed"] = nil
	if err := os.Remove(filepath.Join(work, "vm-killed", "terraform.tfstate")); err != nil {
		t.Fatal(err)
	}
	plan, err = r.Plan(ctx, s, nil)
	if err != nil || len(plan.Changes) != 1 || plan.Changes[0].Action != Create {
		t.Errorf("without the import: %v %+v", err, plan)
	}
}

// killEngine SIGKILLs the engine running in work (found by its working directory).
func killEngine(t *testing.T, work string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil || !strings.HasPrefix(cwd, work) {
			continue
		}
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Ctrl-C during an apply interrupts the engine, which finishes the VM in flight, saves its state
// and exits: the next plan creates nothing.
func TestInterruptedApplySavesItsState(t *testing.T) {
	l := startLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	store := &memStore{states: map[string][]byte{}}
	r := l.runner(t, "tofu", store, t.TempDir())
	s := step(l, "vm-interrupted", 1024, "DC0_H0_VM0")
	plan, err := r.Plan(ctx, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	applyCtx, interrupt := context.WithCancel(ctx)
	go func() {
		for applyCtx.Err() == nil {
			if l.vms(t, "vm-interrupted") > 0 {
				interrupt() // terraform-exec sends SIGINT, then waits (InterruptGrace)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	_, err = r.Apply(applyCtx, plan)
	interrupt()
	if n := l.vms(t, "vm-interrupted"); n != 1 {
		t.Fatalf("%d VMs, want 1 (apply: %v)", n, err)
	}
	if !strings.Contains(string(store.states["vm-interrupted"]), `"vsphere_virtual_machine"`) {
		t.Fatalf("the interrupted apply saved no state holding the VM (apply: %v)", err)
	}
	plan, err = r.Plan(ctx, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range plan.Changes {
		if c.Action == Create || c.Action == Replace {
			t.Errorf("after the interrupt the plan makes the VM again: %+v", c)
		}
	}
}

// Where the engine is looked for: the flag, else beside dhctl, else PATH, and what it says when
// there is none.
func TestFindOrder(t *testing.T) {
	l := startLab(t)
	beside := t.TempDir()
	if err := os.Symlink(l.engines["terraform"], filepath.Join(beside, "terraform")); err != nil {
		t.Fatal(err)
	}
	onPath := func(name string) (string, error) {
		if name == "tofu" {
			return l.engines["tofu"], nil
		}
		return "", exec.ErrNotFound
	}
	ctx := context.Background()
	if e, err := Find(ctx, FindOptions{ExeDir: beside, LookPath: onPath}); err != nil || e.Kind != Terraform || e.Source != "beside dhctl" {
		t.Errorf("beside dhctl: %v %v", e, err)
	}
	if e, err := Find(ctx, FindOptions{ExeDir: t.TempDir(), LookPath: onPath}); err != nil || e.Kind != OpenTofu || e.Source != "PATH" || e.Version != "1.10.6" {
		t.Errorf("PATH: %v %v", e, err)
	}
	if e, err := Find(ctx, FindOptions{Binary: l.engines["terraform"], ExeDir: beside, LookPath: onPath}); err != nil || e.Source != "--terraform-binary" {
		t.Errorf("flag: %v %v", e, err)
	}
	none := func(string) (string, error) { return "", exec.ErrNotFound }
	if _, err := Find(ctx, FindOptions{ExeDir: t.TempDir(), LookPath: none}); err == nil || !strings.Contains(err.Error(), "--terraform-binary") {
		t.Errorf("no engine: %v", err)
	}
}

// compactJSON is outputs with each value's insignificant spaces removed (the engine's output
// command and its state file indent differently).
func compactJSON(t *testing.T, o Outputs) map[string]string {
	t.Helper()
	m := map[string]string{}
	for k, v := range o {
		var b bytes.Buffer
		if err := json.Compact(&b, v); err != nil {
			t.Fatalf("output %s: %v", k, err)
		}
		m[k] = b.String()
	}
	return m
}

package standard_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/e2e/artifacts"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/inventory"
	"github.com/dhctl-dev/dhctl/providers"
	"github.com/dhctl-dev/dhctl/providers/vsphere/vspheretest"
)

// exampleFile is the documented example, from this package's directory.
const exampleFile = "../../../examples/vsphere-cluster.yml"

// steps are the layout's root modules, in the order dhctl applies them.
func steps() []string {
	return []string{providers.BaseInfrastructure, providers.MasterNode, providers.StaticNode}
}

// registry is dhctl's schemas, the provider's among them (candi/cloud-providers/*/openapi).
func registry(t *testing.T) *config.Registry {
	t.Helper()
	reg, err := config.NewRegistry(candi.FS)
	if err != nil {
		t.Fatal(err)
	}
	if !reg.Has("VsphereClusterConfiguration") {
		t.Fatalf("candi.FS has no VsphereClusterConfiguration schema (kinds: %v)", reg.Kinds())
	}
	return reg
}

func load(t *testing.T, reg *config.Registry, path string) (*config.Cluster, error) {
	t.Helper()
	return config.Load(context.Background(), config.LoadOptions{ConfigPaths: []string{path}, Schemas: reg})
}

// TestSchemaAndExample: the example loads against the schema, and the schema's defaults and
// secret marking work as the loader reads them.
func TestSchemaAndExample(t *testing.T) {
	reg := registry(t)
	c, err := load(t, reg, exampleFile)
	if err != nil {
		t.Fatalf("%s does not load:\n%v", exampleFile, err)
	}
	if c.ClusterConfiguration.ClusterType != config.ClusterTypeCloud || c.ClusterConfiguration.Cloud.Provider != "vSphere" {
		t.Errorf("ClusterConfiguration = %+v", c.ClusterConfiguration)
	}
	if c.ProviderClusterConfiguration == nil || c.ProviderClusterConfiguration.Kind != "VsphereClusterConfiguration" {
		t.Fatalf("provider document = %+v", c.ProviderClusterConfiguration)
	}
	pcc := c.ProviderClusterConfiguration.Object
	for path, want := range map[string]any{
		"provider.insecure":     false,
		"vmFolderExists":        false,
		"useNestedResourcePool": true,
		"disableTimesync":       true,
		"regionTagCategory":     "k8s-region",
		"zoneTagCategory":       "k8s-zone",
	} {
		if got := lookup(pcc, path); got != want {
			t.Errorf("%s = %#v, want %#v (written or defaulted)", path, got, want)
		}
	}

	// Defaults fill what the user left out.
	minimal := writeFile(t, "minimal.yml", strings.Replace(simulatorConfig("127.0.0.1:443", ""), "regionTagCategory: k8s-region\n", "", 1))
	c, err = load(t, reg, minimal)
	if err != nil {
		t.Fatalf("minimal document does not load:\n%v", err)
	}
	if got := lookup(c.ProviderClusterConfiguration.Object, "regionTagCategory"); got != "k8s-region" {
		t.Errorf("regionTagCategory defaults to %#v, want k8s-region", got)
	}

	// provider.password is a secret: a problem with it names the field, never the value.
	bad := writeFile(t, "bad.yml", strings.Replace(simulatorConfig("127.0.0.1:443", ""), "password: pass", "password: 73918246", 1))
	_, err = load(t, reg, bad)
	var ps config.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("a numeric password loaded (err %v)", err)
	}
	if msg := ps.Error(); !strings.Contains(msg, "provider.password") || strings.Contains(msg, "73918246") {
		t.Errorf("problem should name provider.password and hide its value:\n%s", msg)
	}

	// Unknown fields are refused everywhere, including inside the shared instance class.
	typo := writeFile(t, "typo.yml", strings.Replace(simulatorConfig("127.0.0.1:443", ""), "numCPUs: 1", "numCPU: 1", 1))
	if _, err := load(t, reg, typo); err == nil || !strings.Contains(err.Error(), `did you mean "numCPUs"`) {
		t.Errorf("a misspelt instance class field: %v", err)
	}
}

// requiredProviders matches the opening of a required_providers block (not a mention in a comment).
var requiredProviders = regexp.MustCompile(`(?m)^\s*required_providers\s*\{`)

// TestLayoutFiles: each root module declares its providers once (two required_providers blocks
// in one module are an error), and the files the steps share are the same in each.
func TestLayoutFiles(t *testing.T) {
	read := func(step, name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(step, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, step := range steps() {
		files, err := filepath.Glob(filepath.Join(step, "*.tf"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no .tf files (%v)", step, err)
		}
		n := 0
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			n += len(requiredProviders.FindAllIndex(b, -1))
		}
		if n != 1 {
			t.Errorf("%s: required_providers appears %d times, want once", step, n)
		}
		v := read(step, "versions.tf")
		if !strings.Contains(v, `source  = "hashicorp/vsphere"`) || !strings.Contains(v, `version = ">= 1.26.0"`) {
			t.Errorf("%s/versions.tf does not require hashicorp/vsphere >= 1.26.0", step)
		}
		for _, shared := range []string{"versions.tf", "providers.tf", "common.tf"} {
			if got, want := read(step, shared), read(providers.BaseInfrastructure, shared); got != want {
				t.Errorf("%s/%s differs from %s/%s: the steps share it", step, shared, providers.BaseInfrastructure, shared)
			}
		}
	}
	if read(providers.MasterNode, "node.tf") != read(providers.StaticNode, "node.tf") {
		t.Errorf("master-node/node.tf and static-node/node.tf differ: the node steps share it")
	}
	base := read(providers.BaseInfrastructure, "variables.tf")
	for _, step := range []string{providers.MasterNode, providers.StaticNode} {
		if !strings.HasPrefix(read(step, "variables.tf"), base) {
			t.Errorf("%s/variables.tf does not start with base-infrastructure's variables", step)
		}
	}
}

// The simulator's inventory (simulator.VPX) and what the test adds to it.
const (
	datacenter    = "DC0"
	clusterName   = "DC0_C0" // a cluster: zone by name (no zoneComputeResources entry)
	hostName      = "DC0_H0" // a standalone host: zone "zone-b", path given as discovery would
	template      = "DC0_H0_VM0"
	datastoreName = "LocalDS_0"
	networkName   = "VM Network"
	vmFolder      = "dhctl-e2e"
	prefix        = "e2e"
	clusterUUID   = "5c0ffee0-1111-4222-8333-944445555666"
	sshPublicKey  = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKiAa0AXxPbDWhAAVCEEZLu7fFgvdMH3P+hoR+kD9TdJ dhctl@e2e"
)

// simulatorConfig is a whole configuration for the simulator at server; extra is appended to
// the VsphereClusterConfiguration document.
func simulatorConfig(server, extra string) string {
	return `apiVersion: deckhouse.io/v1
kind: ClusterConfiguration
clusterType: Cloud
cloud:
  provider: vSphere
  prefix: ` + prefix + `
podSubnetCIDR: 10.111.0.0/16
serviceSubnetCIDR: 10.222.0.0/16
kubernetesVersion: "1.33"
---
apiVersion: deckhouse.io/v1
kind: VsphereClusterConfiguration
layout: Standard
provider:
  server: "` + server + `"
  username: user
  password: pass
  insecure: true
vmFolderPath: ` + vmFolder + `
regionTagCategory: k8s-region
region: region-1
zones: [` + clusterName + `, zone-b]
sshPublicKey: ` + sshPublicKey + `
masterNodeGroup:
  replicas: 1
  instanceClass:
    numCPUs: 2
    memory: 2048
    template: ` + template + `
    mainNetwork: ` + networkName + `
    datastore: ` + datastoreName + `
    rootDiskSize: 12
    mainNetworkIPAddresses:
    - address: 10.0.0.10/24
      gateway: 10.0.0.1
      nameservers:
        addresses: [10.0.0.1]
        search: [e2e.example.com]
nodeGroups:
- name: worker
  replicas: 2
  zones: [zone-b]
  instanceClass:
    numCPUs: 1
    memory: 1024
    template: ` + template + `
    mainNetwork: ` + networkName + `
    datastore: ` + datastoreName + `
    mainNetworkIPAddresses:
    - address: 10.0.0.20/24
      gateway: 10.0.0.1
      nameservers: {}
    - address: 10.0.0.21/24
      gateway: 10.0.0.1
      nameservers: {}
    runtimeOptions:
      memoryReservation: 50
` + extra
}

// TestStandardLayoutInSimulator applies the three steps with OpenTofu and the vSphere provider
// against govmomi's simulator, checks what they made and what they output, that a second plan
// changes nothing, and that destroying them leaves the simulator as it was.
func TestStandardLayoutInSimulator(t *testing.T) {
	ctx, cancel := testContext(t)
	defer cancel()

	opts := artifacts.Options{Logf: t.Logf}
	bins, err := artifacts.Build(ctx, opts, artifacts.OpenTofu)
	if err != nil {
		t.Fatalf("building OpenTofu: %v", err)
	}
	tofu := bins["tofu"]
	if tofu == "" {
		t.Fatalf("artifacts.Build(OpenTofu) gave no tofu binary: %v", bins)
	}
	mirror, err := artifacts.ProviderMirror(ctx, opts)
	if err != nil {
		t.Fatalf("building the vSphere provider mirror: %v", err)
	}

	sim := startSimulator(t, ctx)
	before := sim.vmNames(t, ctx)
	beforeAll := sim.env.Inventory(t, ctx)

	reg := registry(t)
	cfg := writeFile(t, "config.yml", simulatorConfig(sim.host, ""))
	c, err := load(t, reg, cfg)
	if err != nil {
		t.Fatalf("the test's configuration does not load:\n%v", err)
	}

	eng := newEngine(t, tofu, mirror)
	// The path of zone-b's compute resource, as dhctl's discovery finds it from the tag.
	discovery := map[string]any{"zoneComputeResources": map[string]string{"zone-b": "/" + datacenter + "/host/" + hostName}}
	nodes := map[string]*providers.NodeSpec{
		providers.BaseInfrastructure: nil,
		providers.MasterNode:         {Name: prefix + "-master-0", NodeGroup: "master", Index: 0, Role: inventory.Master, Step: providers.MasterNode},
		providers.StaticNode:         {Name: prefix + "-worker-0", NodeGroup: "worker", Index: 0, Role: inventory.Worker, Step: providers.StaticNode},
	}
	// cloud-init user data as dhctl passes it: base64 of the document.
	cloudConfig := base64.StdEncoding.EncodeToString([]byte("#cloud-config\nruncmd: [[touch, /dhctl-was-here]]\n"))

	// A step's variables: the common ones and those from the discovery.
	varsFor := func(c *config.Cluster, spec *providers.NodeSpec) map[string]any {
		t.Helper()
		vars, err := providers.Vars(c, clusterUUID, spec, cloudConfig)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range discovery {
			vars[k] = v
		}
		return vars
	}

	work := map[string]*workspace{}
	for _, step := range steps() {
		w := eng.workspace(t, step, step, varsFor(c, nodes[step]))
		work[step] = w
		w.run(t, ctx, "init", 0, "init", "-input=false", "-no-color")
		w.validate(t, ctx)
		w.run(t, ctx, "plan", 2, "plan", "-input=false", "-no-color", "-detailed-exitcode", "-out=plan.tfplan")
		w.run(t, ctx, "apply", 0, "apply", "-input=false", "-no-color", "-auto-approve", "plan.tfplan")
		w.outputs = w.output(t, ctx)
		if out := w.run(t, ctx, "replan", -1, "plan", "-input=false", "-no-color", "-detailed-exitcode"); out.code != 0 {
			t.Errorf("%s: a second plan wants changes (exit %d):\n%s", step, out.code, out.stdout)
		}
	}

	// What a converge changes: new first-boot data leaves a running machine alone, more
	// memory is an update in place, a node beyond the configured addresses is refused.
	sw := work[providers.StaticNode]
	if out := sw.run(t, ctx, "plan-userdata", -1, "plan", "-input=false", "-no-color", "-detailed-exitcode", "-var", "cloudConfig=Y2hhbmdlZA=="); out.code != 0 {
		t.Errorf("static-node: new cloudConfig plans changes (exit %d):\n%s", out.code, out.stdout)
	}
	bigger, err := load(t, reg, writeFile(t, "bigger.yml", strings.Replace(simulatorConfig(sim.host, ""), "memory: 1024", "memory: 1536", 1)))
	if err != nil {
		t.Fatal(err)
	}
	sw.writeVars(t, "bigger.tfvars.json", varsFor(bigger, nodes[providers.StaticNode]))
	sw.run(t, ctx, "plan-memory", 2, "plan", "-input=false", "-no-color", "-detailed-exitcode", "-var-file=bigger.tfvars.json", "-out=bigger.tfplan")
	if actions := sw.plannedActions(t, ctx, "bigger.tfplan"); !slices.Equal(actions["vsphere_virtual_machine.node"], []string{"update"}) {
		t.Errorf("static-node: more memory plans %v, want an update in place", actions)
	}
	// The data disk adopted by an import (as dhctl recovers what a killed apply made) is the
	// same disk: the next plan changes nothing.
	mw := work[providers.MasterNode]
	mw.run(t, ctx, "state-rm", 0, "state", "rm", "-no-color", "vsphere_virtual_disk.kubernetes_data")
	mw.run(t, ctx, "import", 0, "import", "-input=false", "-no-color", "vsphere_virtual_disk.kubernetes_data",
		"/"+datacenter+"/["+datastoreName+"] deckhouse/"+clusterUUID+"-kubernetes-data-0.vmdk")
	if out := mw.run(t, ctx, "plan-imported", -1, "plan", "-input=false", "-no-color", "-detailed-exitcode"); out.code != 0 {
		t.Errorf("master-node: after importing the data disk a plan wants changes (exit %d):\n%s", out.code, out.stdout)
	}

	// A VM adopted by an import is kept: the provider's first apply after an import only
	// updates in place what an import cannot read (the clone settings, the waits, the first-boot
	// data). That includes a VM the killed apply cloned and never configured: without its
	// first-boot data here, it gets it (checkVM below).
	sw.run(t, ctx, "state-rm", 0, "state", "rm", "-no-color", "vsphere_virtual_machine.node")
	sim.dropGuestinfo(t, ctx, prefix+"-worker-0")
	sw.run(t, ctx, "import", 0, "import", "-input=false", "-no-color", "vsphere_virtual_machine.node",
		"/"+datacenter+"/vm/"+vmFolder+"/"+prefix+"-worker-0")
	sw.run(t, ctx, "plan-imported", -1, "plan", "-input=false", "-no-color", "-out=imported.tfplan")
	if actions := sw.plannedActions(t, ctx, "imported.tfplan"); len(actions) != 1 || !slices.Equal(actions["vsphere_virtual_machine.node"], []string{"update"}) {
		t.Errorf("static-node: after importing the VM the plan is %v, want an update in place", actions)
	}
	sw.run(t, ctx, "apply-imported", 0, "apply", "-input=false", "-no-color", "-auto-approve", "imported.tfplan")
	if out := sw.run(t, ctx, "replan-imported", -1, "plan", "-input=false", "-no-color", "-detailed-exitcode"); out.code != 0 {
		t.Errorf("static-node: after the adopted VM's apply a plan wants changes (exit %d):\n%s", out.code, out.stdout)
	}

	// A new master template replaces the machine and keeps the Kubernetes data disk.
	retemplated, err := load(t, reg, writeFile(t, "template.yml", strings.Replace(simulatorConfig(sim.host, ""), "template: "+template, "template: DC0_H0_VM1", 1)))
	if err != nil {
		t.Fatal(err)
	}
	mw.writeVars(t, "template.tfvars.json", varsFor(retemplated, nodes[providers.MasterNode]))
	mw.run(t, ctx, "plan-template", 2, "plan", "-input=false", "-no-color", "-detailed-exitcode", "-var-file=template.tfvars.json", "-out=template.tfplan")
	if actions := mw.plannedActions(t, ctx, "template.tfplan"); len(actions) != 1 || !slices.Equal(actions["vsphere_virtual_machine.master"], []string{"delete", "create"}) {
		t.Errorf("master-node: a new template plans %v, want only the VM replaced", actions)
	}

	// A node group whose zones are none of the global ones is refused before anything is read.
	elsewhere, err := load(t, reg, writeFile(t, "elsewhere.yml", strings.Replace(simulatorConfig(sim.host, ""), "zones: [zone-b]", "zones: [zone-c]", 1)))
	if err != nil {
		t.Fatal(err)
	}
	sw.writeVars(t, "elsewhere.tfvars.json", varsFor(elsewhere, nodes[providers.StaticNode]))
	if out := sw.run(t, ctx, "plan-zones", 1, "plan", "-input=false", "-no-color", "-var-file=elsewhere.tfvars.json"); !strings.Contains(strings.Join(strings.Fields(out.stderr), " "), "must include at least one of VsphereClusterConfiguration.zones") {
		t.Errorf("static-node with zones outside the global ones: want the validation's message, got:\n%s", out.stderr)
	}

	// The group's second node: its own step (work dir and state), the second address.
	second := *nodes[providers.StaticNode]
	second.Index, second.Name = 1, prefix+"-worker-1"
	w1 := eng.workspace(t, providers.StaticNode, providers.StaticNode+"-1", varsFor(c, &second))
	w1.run(t, ctx, "init", 0, "init", "-input=false", "-no-color")
	w1.run(t, ctx, "apply", 0, "apply", "-input=false", "-no-color", "-auto-approve")
	w1.outputs = w1.output(t, ctx)
	if out := w1.run(t, ctx, "replan", -1, "plan", "-input=false", "-no-color", "-detailed-exitcode"); out.code != 0 {
		t.Errorf("static-node 1: a second plan wants changes (exit %d):\n%s", out.code, out.stdout)
	}
	// A third one has no address in the configuration.
	third := second
	third.Index, third.Name = 2, prefix+"-worker-2"
	w2 := eng.workspace(t, providers.StaticNode, providers.StaticNode+"-2", varsFor(c, &third))
	w2.run(t, ctx, "init", 0, "init", "-input=false", "-no-color")
	if out := w2.run(t, ctx, "plan", 1, "plan", "-input=false", "-no-color"); !strings.Contains(strings.Join(strings.Fields(out.stderr), " "), "has no address for node 2 (it lists 2)") {
		t.Errorf("static-node index 2 without an address: want the precondition's message, got:\n%s", out.stderr)
	}

	// base-infrastructure: the folder, the cluster's pool in both zones, the discovery data.
	if _, err := sim.finder.Folder(ctx, "vm/"+vmFolder); err != nil {
		t.Errorf("VM folder %s: %v", vmFolder, err)
	}
	clusterPool := sim.pool(t, ctx, clusterName+"/Resources/"+prefix)
	hostPool := sim.pool(t, ctx, hostName+"/Resources/"+prefix)
	var discovered struct {
		APIVersion, Kind, VMFolderPath, ResourcePoolPath string
		Zones                                            []string
	}
	decode(t, work[providers.BaseInfrastructure].outputs, "cloud_discovery_data", &discovered)
	if discovered.APIVersion != "deckhouse.io/v1" || discovered.Kind != "VsphereCloudDiscoveryData" || discovered.VMFolderPath != vmFolder ||
		discovered.ResourcePoolPath != prefix || !slices.Equal(discovered.Zones, []string{clusterName, "zone-b"}) {
		t.Errorf("cloud_discovery_data = %+v", discovered)
	}

	// master-node: in zone 0 (the cluster), with rootDiskSize, the Kubernetes data disk
	// attached, and its static address.
	master := sim.vm(t, ctx, prefix+"-master-0")
	checkVM(t, master, vmCheck{cpus: 2, memory: 2048, pool: clusterPool, disksGiB: []int64{12, 0}, dataDisk: "[" + datastoreName + "] deckhouse/" + clusterUUID + "-kubernetes-data-0.vmdk", hostname: prefix + "-master-0", address: "10.0.0.10/24", userdata: cloudConfig})
	ds, err := sim.finder.Datastore(ctx, datastoreName)
	if err != nil {
		t.Fatal(err)
	}
	dataDisk := "deckhouse/" + clusterUUID + "-kubernetes-data-0.vmdk"
	if _, err := ds.Stat(ctx, dataDisk); err != nil {
		t.Errorf("Kubernetes data disk %s: %v", dataDisk, err)
	}
	masterOut := work[providers.MasterNode].outputs
	for name, want := range map[string]string{
		"master_ip_address_for_ssh":   "10.0.0.10",
		"node_internal_ip_address":    "10.0.0.10",
		"kubernetes_data_device_path": "/dev/sdb",
	} {
		var got string
		decode(t, masterOut, name, &got)
		if got != want {
			t.Errorf("master-node output %s = %q, want %q", name, got, want)
		}
	}

	// static-node: group worker, in its zone (the standalone host), the default 30 GiB root
	// disk, 50% of its memory reserved.
	worker := sim.vm(t, ctx, prefix+"-worker-0")
	checkVM(t, worker, vmCheck{cpus: 1, memory: 1024, pool: hostPool, disksGiB: []int64{30}, hostname: prefix + "-worker-0", address: "10.0.0.20/24", userdata: cloudConfig, reservation: 512})
	var workerIP string
	decode(t, work[providers.StaticNode].outputs, "node_internal_ip_address", &workerIP)
	if workerIP != "10.0.0.20" {
		t.Errorf("static-node output node_internal_ip_address = %q, want 10.0.0.20", workerIP)
	}
	worker1 := sim.vm(t, ctx, prefix+"-worker-1")
	checkVM(t, worker1, vmCheck{cpus: 1, memory: 1024, pool: hostPool, disksGiB: []int64{30}, hostname: prefix + "-worker-1", address: "10.0.0.21/24", userdata: cloudConfig, reservation: 512})
	decode(t, w1.outputs, "node_internal_ip_address", &workerIP)
	if workerIP != "10.0.0.21" {
		t.Errorf("static-node 1 output node_internal_ip_address = %q, want 10.0.0.21", workerIP)
	}

	w1.run(t, ctx, "destroy", 0, "destroy", "-input=false", "-no-color", "-auto-approve")
	for _, step := range slices.Backward(steps()) {
		work[step].run(t, ctx, "destroy", 0, "destroy", "-input=false", "-no-color", "-auto-approve")
	}
	if got := vspheretest.WithoutDiskDirs(sim.env.Inventory(t, ctx)); !slices.Equal(got, beforeAll) {
		t.Errorf("after destroy the simulator holds:\n%s\nbefore the steps it held:\n%s", strings.Join(got, "\n"), strings.Join(beforeAll, "\n"))
	}
	if after := sim.vmNames(t, ctx); !slices.Equal(after, before) {
		t.Errorf("after destroy the simulator's VMs are %v, want %v", after, before)
	}
	if _, err := sim.finder.Folder(ctx, "vm/"+vmFolder); err == nil {
		t.Errorf("VM folder %s is still there after destroy", vmFolder)
	}
	if _, err := ds.Stat(ctx, dataDisk); !errors.As(err, new(object.DatastoreNoSuchFileError)) {
		t.Errorf("after destroy the Kubernetes data disk %s: %v, want no such file", dataDisk, err)
	}
	for _, p := range []string{clusterName, hostName} {
		if _, err := sim.finder.ResourcePool(ctx, p+"/Resources/"+prefix); err == nil {
			t.Errorf("resource pool %s/Resources/%s is still there after destroy", p, prefix)
		}
	}
	eng.report(t)
}

// TestStandardLayoutValidatesWithTerraform: the layout is also valid, with no warning, for
// Terraform (1.5.7, the last MPL release), the other engine dhctl drives.
func TestStandardLayoutValidatesWithTerraform(t *testing.T) {
	ctx, cancel := testContext(t)
	defer cancel()
	opts := artifacts.Options{Logf: t.Logf}
	bins, err := artifacts.Build(ctx, opts, artifacts.Terraform)
	if err != nil {
		t.Fatalf("building Terraform: %v", err)
	}
	if bins["terraform"] == "" {
		t.Fatalf("artifacts.Build(Terraform) gave no terraform binary: %v", bins)
	}
	mirror, err := artifacts.ProviderMirror(ctx, opts)
	if err != nil {
		t.Fatalf("building the vSphere provider mirror: %v", err)
	}
	eng := newEngine(t, bins["terraform"], mirror)
	for _, step := range steps() {
		w := eng.workspace(t, step, step, map[string]any{})
		w.run(t, ctx, "init", 0, "init", "-input=false", "-no-color")
		w.validate(t, ctx)
	}
	eng.report(t)
}

// testContext ends before go test's own deadline, so a slow step fails with its output and the
// cleanups still run.
func testContext(t *testing.T) (context.Context, context.CancelFunc) {
	end := time.Now().Add(40 * time.Minute)
	if dl, ok := t.Deadline(); ok && dl.Add(-30*time.Second).Before(end) {
		end = dl.Add(-30 * time.Second)
	}
	return context.WithDeadline(context.Background(), end)
}

// simulatorEnv is an in-process vCenter simulator with the region and zone tags of
// simulatorConfig attached.
type simulatorEnv struct {
	host   string // 127.0.0.1:port
	client *govmomi.Client
	finder *find.Finder
	env    *vspheretest.Env
}

func startSimulator(t *testing.T, ctx context.Context) *simulatorEnv {
	t.Helper()
	e := vspheretest.Start(t, ctx)
	return &simulatorEnv{host: e.Host, client: e.Client, finder: e.Finder, env: e}
}

func (s *simulatorEnv) vmNames(t *testing.T, ctx context.Context) []string {
	return s.env.VMNames(t, ctx)
}

// dropGuestinfo removes a VM's first-boot data, as it is when an apply was killed between the
// clone and the configuration of the VM.
func (s *simulatorEnv) dropGuestinfo(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	obj, err := s.finder.VirtualMachine(ctx, vmFolder+"/"+name)
	if err != nil {
		t.Fatal(err)
	}
	var drop []types.BaseOptionValue
	for _, k := range []string{"guestinfo.metadata", "guestinfo.metadata.encoding", "guestinfo.userdata", "guestinfo.userdata.encoding"} {
		drop = append(drop, &types.OptionValue{Key: k, Value: ""})
	}
	task, err := obj.Reconfigure(ctx, types.VirtualMachineConfigSpec{ExtraConfig: drop})
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		t.Fatalf("dropping the first-boot data of %s: %v", name, err)
	}
	vm := s.vm(t, ctx, name)
	for _, o := range vm.Config.ExtraConfig {
		if v := o.GetOptionValue(); strings.HasPrefix(v.Key, "guestinfo.") && v.Value != "" {
			t.Fatalf("%s still has %s", name, v.Key)
		}
	}
}

func (s *simulatorEnv) pool(t *testing.T, ctx context.Context, path string) types.ManagedObjectReference {
	t.Helper()
	p, err := s.finder.ResourcePool(ctx, path)
	if err != nil {
		t.Fatalf("resource pool %s: %v", path, err)
	}
	return p.Reference()
}

// vm finds a VM in the cluster's folder (which also checks the folder) and reads what checkVM
// looks at.
func (s *simulatorEnv) vm(t *testing.T, ctx context.Context, name string) mo.VirtualMachine {
	t.Helper()
	obj, err := s.finder.VirtualMachine(ctx, vmFolder+"/"+name)
	if err != nil {
		t.Fatalf("VM %s in folder %s: %v", name, vmFolder, err)
	}
	var vm mo.VirtualMachine
	if err := obj.Properties(ctx, obj.Reference(), []string{"name", "config", "resourcePool"}, &vm); err != nil {
		t.Fatal(err)
	}
	return vm
}

type vmCheck struct {
	cpus, memory int32
	pool         types.ManagedObjectReference
	disksGiB     []int64 // sizes of the disks in order, 0 = not checked
	dataDisk     string  // the file of the last disk, if set
	hostname     string
	address      string // the static address in the cloud-init network configuration
	userdata     string
	reservation  int64 // MiB, 0 = none set
}

func checkVM(t *testing.T, vm mo.VirtualMachine, want vmCheck) {
	t.Helper()
	hw := vm.Config.Hardware
	if hw.NumCPU != want.cpus || hw.MemoryMB != want.memory {
		t.Errorf("%s: %d CPUs, %d MiB, want %d, %d", vm.Name, hw.NumCPU, hw.MemoryMB, want.cpus, want.memory)
	}
	if vm.ResourcePool == nil || *vm.ResourcePool != want.pool {
		t.Errorf("%s: in resource pool %v, want %v", vm.Name, vm.ResourcePool, want.pool)
	}
	var disks []string
	for _, d := range hw.Device {
		vd, ok := d.(*types.VirtualDisk)
		if !ok {
			continue
		}
		file := "?"
		if b, ok := vd.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
			file = b.GetVirtualDeviceFileBackingInfo().FileName
		}
		disks = append(disks, file)
		// The simulator reports no capacity for an attached disk.
		if n := len(disks) - 1; n < len(want.disksGiB) && want.disksGiB[n] != 0 && vd.CapacityInKB>>20 != want.disksGiB[n] {
			t.Errorf("%s: disk %s of %d GiB, want %d", vm.Name, file, vd.CapacityInKB>>20, want.disksGiB[n])
		}
	}
	if len(disks) != len(want.disksGiB) || want.dataDisk != "" && disks[len(disks)-1] != want.dataDisk {
		t.Errorf("%s: disks %v, want %d (the last %q)", vm.Name, disks, len(want.disksGiB), want.dataDisk)
	}
	if want.reservation != 0 {
		if r := vm.Config.MemoryAllocation; r == nil || r.Reservation == nil || *r.Reservation != want.reservation {
			t.Errorf("%s: memory reservation %+v, want %d MiB", vm.Name, r, want.reservation)
		}
	}
	extra := map[string]string{}
	for _, o := range vm.Config.ExtraConfig {
		if v := o.GetOptionValue(); v != nil {
			extra[v.Key], _ = v.Value.(string)
		}
	}
	if extra["guestinfo.userdata"] != want.userdata || extra["guestinfo.userdata.encoding"] != "base64" {
		t.Errorf("%s: guestinfo.userdata = %q (%s), want the cloudConfig", vm.Name, extra["guestinfo.userdata"], extra["guestinfo.userdata.encoding"])
	}
	raw, err := base64.StdEncoding.DecodeString(extra["guestinfo.metadata"])
	if err != nil || extra["guestinfo.metadata.encoding"] != "base64" {
		t.Fatalf("%s: guestinfo.metadata is not base64 (%v, encoding %q)", vm.Name, err, extra["guestinfo.metadata.encoding"])
	}
	var md struct {
		Hostname string `json:"local-hostname"`
		Keys     string `json:"public-keys-data"`
		Network  struct {
			Version   int
			Ethernets map[string]struct{ Addresses []string }
		}
	}
	if err := json.Unmarshal(raw, &md); err != nil {
		t.Fatalf("%s: guestinfo.metadata: %v\n%s", vm.Name, err, raw)
	}
	if md.Hostname != want.hostname || md.Keys != sshPublicKey || md.Network.Version != 2 ||
		!slices.Equal(md.Network.Ethernets["ens192"].Addresses, []string{want.address}) {
		t.Errorf("%s: guestinfo.metadata = %s", vm.Name, raw)
	}
	if extra["time.synchronize.tools.startup"] != "0" {
		t.Errorf("%s: time sync at start not disabled (disableTimesync defaults to true)", vm.Name)
	}
}

// engine runs OpenTofu offline: a CLI configuration that installs only from the provider
// mirror, and an environment of its own (no proxy, no checkpoint, no input).
type engine struct {
	bin     string
	env     []string
	root    string
	timings []timing
}

type timing struct {
	step, what string
	took       time.Duration
}

func newEngine(t *testing.T, bin, mirror string) *engine {
	t.Helper()
	root := t.TempDir()
	cliConfig := filepath.Join(root, "tofu.rc")
	var include []string
	for _, host := range artifacts.MirrorHosts() {
		include = append(include, fmt.Sprintf("%q", host+"/hashicorp/vsphere"))
	}
	rc := fmt.Sprintf(`disable_checkpoint = true
provider_installation {
  filesystem_mirror {
    path    = %q
    include = [%s]
  }
  direct {
    exclude = ["*/*/*"]
  }
}
`, mirror, strings.Join(include, ", "))
	if err := os.WriteFile(cliConfig, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(root, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	return &engine{
		bin:  bin,
		root: root,
		env: []string{
			"HOME=" + home,
			"TMPDIR=" + root,
			"TF_CLI_CONFIG_FILE=" + cliConfig,
			"CHECKPOINT_DISABLE=1",
			"TF_IN_AUTOMATION=1",
			"TF_INPUT=0",
		},
	}
}

func (e *engine) report(t *testing.T) {
	var b strings.Builder
	for _, tm := range e.timings {
		fmt.Fprintf(&b, "\n  %-20s %-14s %6.2fs", tm.step, tm.what, tm.took.Seconds())
	}
	t.Logf("engine timings:%s", b.String())
}

// workspace is one step's working directory: the module's .tf files and its tfvars.
type workspace struct {
	e       *engine
	step    string
	dir     string
	outputs map[string]json.RawMessage
}

// workspace copies module's .tf files into a new working directory called name and writes the
// variables as its terraform.tfvars.json.
func (e *engine) workspace(t *testing.T, module, name string, vars map[string]any) *workspace {
	t.Helper()
	dir := filepath.Join(e.root, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(module, "*.tf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("module %s: no .tf files (%v)", module, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w := &workspace{e: e, step: name, dir: dir}
	w.writeVars(t, "terraform.tfvars.json", vars)
	return w
}

func (w *workspace) writeVars(t *testing.T, file string, vars map[string]any) {
	t.Helper()
	js, err := json.MarshalIndent(vars, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.dir, file), js, 0o600); err != nil {
		t.Fatal(err)
	}
}

// validate fails the test unless the module is valid without warnings.
func (w *workspace) validate(t *testing.T, ctx context.Context) {
	t.Helper()
	out := w.run(t, ctx, "validate", -1, "validate", "-json", "-no-color")
	var v struct {
		Valid        bool
		WarningCount int `json:"warning_count"`
		Diagnostics  []struct{ Severity, Summary, Detail string }
	}
	if err := json.Unmarshal([]byte(out.stdout), &v); err != nil {
		t.Fatalf("%s: validate -json: %v\n%s%s", w.step, err, out.stdout, out.stderr)
	}
	if !v.Valid || v.WarningCount != 0 {
		t.Errorf("%s: validate: valid %v, %d warnings: %+v", w.step, v.Valid, v.WarningCount, v.Diagnostics)
	}
}

// plannedActions reads a saved plan: the actions on each resource address.
func (w *workspace) plannedActions(t *testing.T, ctx context.Context, planFile string) map[string][]string {
	t.Helper()
	out := w.run(t, ctx, "show", 0, "show", "-json", "-no-color", planFile)
	var plan struct {
		ResourceChanges []struct {
			Address string
			Change  struct{ Actions []string }
		} `json:"resource_changes"`
	}
	if err := json.Unmarshal([]byte(out.stdout), &plan); err != nil {
		t.Fatalf("%s: tofu show -json: %v", w.step, err)
	}
	m := map[string][]string{}
	for _, rc := range plan.ResourceChanges {
		if !slices.Equal(rc.Change.Actions, []string{"no-op"}) {
			m[rc.Address] = rc.Change.Actions
		}
	}
	return m
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs the engine in the workspace; wantCode -1 accepts any exit code.
func (w *workspace) run(t *testing.T, ctx context.Context, what string, wantCode int, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(ctx, w.e.bin, args...)
	cmd.Dir = w.dir
	cmd.Env = w.e.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	w.e.timings = append(w.e.timings, timing{w.step, what, took})
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s: tofu %s: %v", w.step, strings.Join(args, " "), err)
	}
	if wantCode >= 0 && code != wantCode {
		t.Fatalf("%s: tofu %s exited %d, want %d (%.1fs)\nstdout:\n%s\nstderr:\n%s",
			w.step, strings.Join(args, " "), code, wantCode, took.Seconds(), stdout.String(), stderr.String())
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

func (w *workspace) output(t *testing.T, ctx context.Context) map[string]json.RawMessage {
	t.Helper()
	out := w.run(t, ctx, "output", 0, "output", "-json", "-no-color")
	var raw map[string]struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal([]byte(out.stdout), &raw); err != nil {
		t.Fatalf("%s: tofu output -json: %v\n%s", w.step, err, out.stdout)
	}
	m := map[string]json.RawMessage{}
	for k, v := range raw {
		m[k] = v.Value
	}
	return m
}

func decode(t *testing.T, outputs map[string]json.RawMessage, name string, v any) {
	t.Helper()
	raw, ok := outputs[name]
	if !ok {
		t.Errorf("no output %s (have %v)", name, keys(outputs))
		return
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Errorf("output %s: %v\n%s", name, err, raw)
	}
}

func keys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// lookup reads a dotted path of nested maps.
func lookup(m map[string]any, path string) any {
	var v any = m
	for _, p := range strings.Split(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

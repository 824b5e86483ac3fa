package vsphere

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/inventory"
	"github.com/dhctl-dev/dhctl/providers"
	"github.com/dhctl-dev/dhctl/providers/vsphere/vspheretest"
)

const testUUID = "5c0ffee0-1111-4222-8333-944445555666"

func testConfig(server, datastore string) string {
	return `apiVersion: deckhouse.io/v1
kind: ClusterConfiguration
clusterType: Cloud
cloud: {provider: vSphere, prefix: lab}
podSubnetCIDR: 10.111.0.0/16
serviceSubnetCIDR: 10.222.0.0/16
kubernetesVersion: "1.33"
---
apiVersion: deckhouse.io/v1
kind: VsphereClusterConfiguration
layout: Standard
provider: {server: "` + server + `", username: user, password: pass, insecure: true}
vmFolderPath: lab
region: ` + vspheretest.RegionTag + `
zones: [` + vspheretest.Cluster + `, ` + vspheretest.ZoneB + `]
sshPublicKey: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKiAa0AXxPbDWhAAVCEEZLu7fFgvdMH3P+hoR+kD9TdJ t@t
masterNodeGroup:
  replicas: 2
  instanceClass: {numCPUs: 2, memory: 2048, template: ` + vspheretest.Template + `, mainNetwork: "` + vspheretest.Network + `", datastore: ` + datastore + `}
nodeGroups:
- name: worker
  replicas: 1
  instanceClass: {numCPUs: 1, memory: 1024, template: ` + vspheretest.Template + `, mainNetwork: "` + vspheretest.Network + `", datastore: ` + vspheretest.Datastore + `}
`
}

func load(t *testing.T, yaml string) *config.Cluster {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(context.Background(), config.LoadOptions{ConfigPaths: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func provider(t *testing.T, yaml string) *Provider {
	t.Helper()
	p, err := New(load(t, yaml))
	if err != nil {
		t.Fatal(err)
	}
	return p.(*Provider)
}

func TestNodesAndMachines(t *testing.T) {
	p := provider(t, testConfig("127.0.0.1:1", vspheretest.Datastore))
	specs, err := p.Nodes(nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range specs {
		names = append(names, s.Name+"/"+s.Step+"/"+string(s.Role))
	}
	if got := strings.Join(names, " "); got != "lab-master-0/master-node/master lab-master-1/master-node/master lab-worker-0/static-node/worker" {
		t.Errorf("nodes: %s", got)
	}
	h, err := p.Machine(specs[0], map[string]json.RawMessage{"master_ip_address_for_ssh": []byte(`"10.0.0.10"`), "node_internal_ip_address": []byte(`"10.1.0.10"`)})
	if err != nil || h != (inventory.Host{SSH: "10.0.0.10", IP: "10.1.0.10", Role: inventory.Master, Name: "lab-master-0", NodeGroup: "master"}) {
		t.Errorf("master machine: %+v %v", h, err)
	}
	if _, err := p.Machine(specs[2], map[string]json.RawMessage{"node_internal_ip_address": []byte(`null`)}); err == nil || !strings.Contains(err.Error(), "VMware Tools") {
		t.Errorf("no address: %v", err)
	}
	if _, err := p.Module("", providers.MasterNode); err != nil {
		t.Errorf("the Standard layout's master-node: %v", err)
	}
}

// Against the simulator: discovery by tags, a preflight that names what is missing, and what a
// killed run left (a master's data disk alone, then with its VM) found for adoption.
func TestDiscoveryPreflightAndOrphansInSimulator(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := vspheretest.Start(t, ctx)

	p := provider(t, testConfig(env.Host, vspheretest.Datastore))
	d, err := p.Discover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vars, err := p.DiscoveryVars(d)
	if err != nil {
		t.Fatal(err)
	}
	zones := vars["zoneComputeResources"].(map[string]string)
	if vars["datacenter"] != "/DC0" || zones[vspheretest.Cluster] != vspheretest.Cluster || zones[vspheretest.ZoneB] != vspheretest.Host {
		t.Errorf("discovery: %s -> %v", d, vars)
	}
	if err := p.Preflight(ctx, nil); err != nil {
		t.Errorf("preflight of a good configuration: %v", err)
	}
	bad := provider(t, strings.Replace(testConfig(env.Host, "no-such-ds"), "template: "+vspheretest.Template+", mainNetwork: \""+vspheretest.Network+"\", datastore: no-such-ds",
		"template: no-such-template, mainNetwork: \""+vspheretest.Network+"\", datastore: no-such-ds", 1))
	err = bad.Preflight(ctx, nil)
	for _, want := range []string{"2 object(s)", `masterNodeGroup.instanceClass.datastore: datastore "no-such-ds" not found`, `masterNodeGroup.instanceClass.template: template VM "no-such-template" not found`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("preflight of a bad configuration lacks %q: %v", want, err)
		}
	}
	noRegion := provider(t, strings.Replace(testConfig(env.Host, vspheretest.Datastore), "region: "+vspheretest.RegionTag, "region: region-9", 1))
	if err := noRegion.Preflight(ctx, nil); err == nil || !strings.Contains(err.Error(), `no tag "region-9"`) {
		t.Errorf("unknown region: %v", err)
	}

	specs, _ := p.Nodes(nil)
	if imports, err := p.Orphans(ctx, nil, testUUID, specs[0], nil); err != nil || len(imports) != 0 {
		t.Fatalf("nothing made yet: %v %v", imports, err)
	}
	dc, err := env.Finder.Datacenter(ctx, vspheretest.Datacenter)
	if err != nil {
		t.Fatal(err)
	}
	// The master's data disk alone, as an apply killed before the VM's clone leaves it.
	diskDir := "[" + vspheretest.Datastore + "] deckhouse"
	diskPath := diskDir + "/" + testUUID + "-kubernetes-data-0.vmdk"
	if err := object.NewFileManager(env.Client.Client).MakeDirectory(ctx, diskDir, dc, true); err != nil {
		t.Fatal(err)
	}
	task, err := object.NewVirtualDiskManager(env.Client.Client).CreateVirtualDisk(ctx, diskPath, dc, &types.FileBackedVirtualDiskSpec{
		VirtualDiskSpec: types.VirtualDiskSpec{DiskType: string(types.VirtualDiskTypeThin), AdapterType: string(types.VirtualDiskAdapterTypeLsiLogic)},
		CapacityKb:      1024,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	diskImport := providers.Import{Address: "vsphere_virtual_disk.kubernetes_data", ID: "/" + vspheretest.Datacenter + "/" + diskPath}
	if imports, err := p.Orphans(ctx, nil, testUUID, specs[0], nil); err != nil || !slices.Equal(imports, []providers.Import{diskImport}) {
		t.Errorf("the data disk alone: %+v %v, want %+v", imports, err, diskImport)
	}
	if imports, err := p.Orphans(ctx, nil, testUUID, specs[1], nil); err != nil || len(imports) != 0 {
		t.Errorf("the second master has no disk yet: %+v %v", imports, err)
	}

	// A VM of the node's name in the cluster's folder, as a killed apply leaves it.
	df, err := dc.Folders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	folder, err := df.VmFolder.CreateFolder(ctx, "lab")
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := env.Finder.VirtualMachine(ctx, vspheretest.Template)
	if err != nil {
		t.Fatal(err)
	}
	task, err = tpl.Clone(ctx, folder, "lab-master-0", types.VirtualMachineCloneSpec{})
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	vmImport := providers.Import{Address: "vsphere_virtual_machine.master", ID: "/DC0/vm/lab/lab-master-0"}
	imports, err := p.Orphans(ctx, nil, testUUID, specs[0], nil)
	if err != nil || !slices.Equal(imports, []providers.Import{vmImport, diskImport}) {
		t.Fatalf("orphans: %+v %v", imports, err)
	}
	vmState := []byte(`{"resources":[{"mode":"managed","type":"vsphere_virtual_machine","name":"master","instances":[{}]}]}`)
	if imports, err := p.Orphans(ctx, nil, testUUID, specs[0], vmState); err != nil || !slices.Equal(imports, []providers.Import{diskImport}) {
		t.Errorf("a VM the state holds is not an orphan, its disk outside the state is: %+v %v", imports, err)
	}
	bothState := []byte(`{"resources":[{"mode":"managed","type":"vsphere_virtual_machine","name":"master","instances":[{}]},` +
		`{"mode":"managed","type":"vsphere_virtual_disk","name":"kubernetes_data","instances":[{}]}]}`)
	if imports, err := p.Orphans(ctx, nil, testUUID, specs[0], bothState); err != nil || len(imports) != 0 {
		t.Errorf("the state holds both: %+v %v", imports, err)
	}
}

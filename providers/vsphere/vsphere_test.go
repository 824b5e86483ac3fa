package vsphere

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/inventory"
	"github.com/dhctl-dev/dhctl/internal/state"
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

// A machine keeps its group's settings as the document has them, and a machine its group no
// longer holds (replicas 1 → 0, then the group gone) is evaluated with them: its step's
// variables give the module the group it was made in.
func TestLeftoverMachineKeepsItsGroup(t *testing.T) {
	yaml := strings.Replace(testConfig("127.0.0.1:1", vspheretest.Datastore), "numCPUs: 1, memory: 1024,", "numCPUs: 1, memory: 1024, mainNetworkIPAddresses: [{address: 10.0.0.9/24, gateway: 10.0.0.1, nameservers: {}}],", 1)
	p := provider(t, yaml)
	specs, err := p.Nodes(nil)
	if err != nil {
		t.Fatal(err)
	}
	worker := specs[2]
	var kept map[string]any
	if err := json.Unmarshal(worker.Settings, &kept); err != nil || kept["name"] != "worker" || addresses(kept) == nil {
		t.Fatalf("the worker's kept settings %s (%v), want the whole nodeGroups entry", worker.Settings, err)
	}
	for name, doc := range map[string]string{
		"replicas 0":    strings.Replace(strings.Replace(yaml, "  replicas: 1\n", "  replicas: 0\n", 1), " mainNetworkIPAddresses: [{address: 10.0.0.9/24, gateway: 10.0.0.1, nameservers: {}}],", "", 1),
		"group removed": strings.Split(yaml, "nodeGroups:")[0],
	} {
		c := load(t, doc)
		steps := providers.Steps{Provider: p, Cluster: c, UUID: testUUID}
		s, err := steps.Leftover(worker)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		pcc := s.Vars["providerClusterConfiguration"].(map[string]any)
		groups, _ := pcc["nodeGroups"].([]any)
		if len(groups) != 1 || addresses(groups[0].(map[string]any)) == nil || s.Vars["nodeGroupName"] != "worker" || s.Vars["nodeIndex"] != 0 {
			t.Errorf("%s: the leftover step's variables: nodeGroups %v, group %v, index %v", name, groups, s.Vars["nodeGroupName"], s.Vars["nodeIndex"])
		}
		if _, ok := c.ProviderClusterConfiguration.Object["nodeGroups"].([]any); ok && name == "group removed" {
			t.Errorf("%s: Leftover changed the configuration it was given", name)
		}
	}
	worker.Settings = nil
	if _, err := (providers.Steps{Provider: p, Cluster: load(t, yaml), UUID: testUUID}).Leftover(worker); err == nil || !strings.Contains(err.Error(), "put the group back") {
		t.Errorf("a leftover without kept settings: %v, want an error saying what to do", err)
	}
}

// What destroy and abort destroy: the configuration's machines made, then those made that it no
// longer asks for (replicas lowered without a converge), from their records, as leftovers.
func TestMadeIncludesMachinesTheConfigurationDropped(t *testing.T) {
	l := openLocal(t)
	p := provider(t, testConfig("127.0.0.1:1", vspheretest.Datastore))
	specs, err := p.Nodes(nil)
	if err != nil {
		t.Fatal(err)
	}
	dropped := providers.NodeSpec{Name: "lab-worker-1", NodeGroup: "worker", Index: 1, Role: inventory.Worker, Step: providers.StaticNode, Settings: specs[2].Settings}
	for _, name := range []string{"lab-master-0", "lab-worker-0", "lab-worker-1", clusterstate.BaseInfrastructure} {
		if err := l.SaveTerraformState(name, []byte(`{"version":4,"serial":1,"lineage":"x"}`)); err != nil {
			t.Fatal(err)
		}
	}
	h := inventory.Host{Name: dropped.Name, NodeGroup: "worker", Role: inventory.Worker, SSH: "10.0.0.9", IP: "10.0.0.9"}
	if err := l.RecordMachine(clusterstate.MachineOf(h, dropped.Index, dropped.Settings)); err != nil {
		t.Fatal(err)
	}
	nodes, base, err := providers.Steps{Provider: p, Cluster: load(t, testConfig("127.0.0.1:1", vspheretest.Datastore)), UUID: testUUID}.Made(l)
	if err != nil || !base {
		t.Fatalf("Made: base %v, %v", base, err)
	}
	var got []string
	for _, n := range nodes {
		got = append(got, fmt.Sprintf("%s leftover=%v index=%d", n.Name, n.Leftover, n.Index))
	}
	if want := []string{"lab-master-0 leftover=false index=0", "lab-worker-0 leftover=false index=0", "lab-worker-1 leftover=true index=1"}; !slices.Equal(got, want) {
		t.Errorf("made: %v, want %v", got, want)
	}
	if last := nodes[len(nodes)-1]; compact(t, last.Settings) != compact(t, dropped.Settings) || last.Role != inventory.Worker || last.Step != providers.StaticNode {
		t.Errorf("the dropped machine's spec: %+v", last)
	}
}

func compact(t *testing.T, raw []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func addresses(group map[string]any) any {
	ic, _ := group["instanceClass"].(map[string]any)
	return ic["mainNetworkIPAddresses"]
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

// A state dir made elsewhere than the bootstrap's has none of the machines: they come back from
// the copies the cluster keeps, with their addresses (the states' outputs) and their groups'
// settings, including a machine the configuration dropped; a local state is never replaced.
func TestRestoreFromTheClusterCopies(t *testing.T) {
	l := openLocal(t)
	cfg := testConfig("127.0.0.1:1", vspheretest.Datastore)
	p := provider(t, cfg)
	specs, err := p.Nodes(nil)
	if err != nil {
		t.Fatal(err)
	}
	nodeState := func(ip, sshIP string) []byte {
		return []byte(fmt.Sprintf(`{"version":4,"serial":3,"lineage":"l-%s","outputs":{"node_internal_ip_address":{"value":%q,"type":"string"},"master_ip_address_for_ssh":{"value":%q,"type":"string"}},"resources":[]}`, ip, ip, sshIP))
	}
	kept := []byte(`{"version":4,"serial":9,"lineage":"local"}`)
	if err := l.SaveTerraformState("lab-worker-0", kept); err != nil {
		t.Fatal(err)
	}
	snap := &clusterstate.Snapshot{
		BaseInfraState:        []byte(`{"version":4,"serial":1,"lineage":"base"}`),
		ProviderDiscoveryData: []byte(`{"datacenter":"DC0"}`),
		Nodes: []clusterstate.NodeState{
			{Node: "lab-master-0", NodeGroup: "master", State: nodeState("10.0.0.10", "192.0.2.10"), Settings: []byte(`{"old":true,"replicas":1}`)},
			{Node: "lab-worker-0", NodeGroup: "worker", State: nodeState("10.0.0.20", "10.0.0.20"), Settings: specs[1].Settings},
			{Node: "lab-worker-7", NodeGroup: "worker", State: nodeState("10.0.0.27", "10.0.0.27"), Settings: specs[1].Settings},
		},
	}
	steps := providers.Steps{Provider: p, Cluster: load(t, cfg), UUID: testUUID}
	restored, err := steps.Restore(l, snap)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"lab-master-0", "lab-worker-7"}; !slices.Equal(restored, want) {
		t.Errorf("restored %v, want %v", restored, want)
	}
	if got, _ := l.TerraformState("lab-worker-0"); string(got) != string(kept) {
		t.Errorf("the local state of lab-worker-0 was replaced: %s", got)
	}
	if got, _ := l.TerraformState(clusterstate.BaseInfrastructure); string(got) != string(snap.BaseInfraState) {
		t.Errorf("base state: %s", got)
	}
	if got, _ := l.DiscoveryData(); string(got) != string(snap.ProviderDiscoveryData) {
		t.Errorf("discovery data: %s", got)
	}
	machines, err := l.Machines()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range machines {
		got = append(got, fmt.Sprintf("%s %s %s ssh=%s ip=%s index=%d settings=%s", m.Name, m.NodeGroup, m.Role, m.SSH, m.IP, m.Index, compact(t, m.Settings)))
	}
	want := []string{
		`lab-master-0 master master ssh=192.0.2.10 ip=10.0.0.10 index=0 settings={"old":true,"replicas":1}`,
		"lab-worker-7 worker worker ssh=10.0.0.27 ip=10.0.0.27 index=7 settings=" + compact(t, specs[1].Settings),
	}
	if !slices.Equal(got, want) {
		t.Errorf("machines:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A state the configuration does not name and whose name says no index cannot be placed.
	bad := &clusterstate.Snapshot{Nodes: []clusterstate.NodeState{{Node: "someone-else", NodeGroup: "worker", State: nodeState("10.0.0.30", "10.0.0.30")}}}
	if _, err := steps.Restore(l, bad); err == nil || !strings.Contains(err.Error(), "someone-else") {
		t.Errorf("a state with no index: %v", err)
	}
}

// openLocal is an empty state dir of cluster "lab".
func openLocal(t *testing.T) *clusterstate.Local {
	t.Helper()
	d, err := state.Open(context.Background(), t.TempDir(), "lab")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return clusterstate.NewLocal(d)
}

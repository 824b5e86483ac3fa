package abort

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/e2e/artifacts"
	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/infra"
	"github.com/dhctl-dev/dhctl/internal/state"
	"github.com/dhctl-dev/dhctl/providers"
	"github.com/dhctl-dev/dhctl/providers/vsphere"
	"github.com/dhctl-dev/dhctl/providers/vsphere/vspheretest"
)

func cloudConfig(server string) string {
	return `apiVersion: deckhouse.io/v1
kind: ClusterConfiguration
clusterType: Cloud
cloud: {provider: vSphere, prefix: ab}
podSubnetCIDR: 10.111.0.0/16
serviceSubnetCIDR: 10.222.0.0/16
kubernetesVersion: "1.33"
---
apiVersion: deckhouse.io/v1
kind: InitConfiguration
deckhouse: {imagesRepo: registry.example.com/dhctl}
---
apiVersion: deckhouse.io/v1
kind: VsphereClusterConfiguration
layout: Standard
provider: {server: "` + server + `", username: user, password: pass, insecure: true}
vmFolderPath: ab
region: ` + vspheretest.RegionTag + `
zones: [` + vspheretest.Cluster + `]
sshPublicKey: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKiAa0AXxPbDWhAAVCEEZLu7fFgvdMH3P+hoR+kD9TdJ t@t
masterNodeGroup:
  replicas: 1
  instanceClass:
    numCPUs: 1
    memory: 1024
    template: ` + vspheretest.Template + `
    mainNetwork: "` + vspheretest.Network + `"
    datastore: ` + vspheretest.Datastore + `
    mainNetworkIPAddresses: [{address: 10.0.0.10/24, gateway: 10.0.0.1, nameservers: {}}]
`
}

// Abort of a cloud bootstrap that made its base infrastructure and a master: the machine, then
// the base infrastructure, are destroyed; the simulator is as before and the local state forgets
// the cluster. A second abort says there is nothing to destroy.
func TestAbortDestroysTheCloudInfrastructure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := vspheretest.Start(t, ctx)
	before := env.VMNames(t, ctx)

	p := filepath.Join(t.TempDir(), "c.yml")
	if err := os.WriteFile(p, []byte(cloudConfig(env.Host)), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(ctx, config.LoadOptions{ConfigPaths: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	prov, err := vsphere.New(c)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := state.Open(ctx, t.TempDir(), "ab")
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	l := clusterstate.NewLocal(dir)

	bins, err := artifacts.Build(ctx, artifacts.Options{Logf: t.Logf}, artifacts.OpenTofu)
	if err != nil {
		t.Fatal(err)
	}
	mirror, err := artifacts.ProviderMirror(ctx, artifacts.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := infra.Find(ctx, infra.FindOptions{Binary: bins["tofu"]})
	if err != nil {
		t.Fatal(err)
	}
	runner, err := infra.NewRunner(infra.Options{Engine: eng, PluginDir: mirror, Sources: prov.Sources(), WorkRoot: l.TerraformWorkRoot(), States: l})
	if err != nil {
		t.Fatal(err)
	}
	// What the bootstrap's infrastructure phases leave: the discovery data, both steps applied.
	d, err := prov.Discover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SaveDiscoveryData(d); err != nil {
		t.Fatal(err)
	}
	uuid, _ := l.ClusterUUID()
	steps := providers.Steps{Provider: prov, Cluster: c, UUID: uuid, Discovery: d}
	specs, _ := prov.Nodes(c)
	base, err := steps.Base(clusterstate.BaseInfrastructure)
	if err != nil {
		t.Fatal(err)
	}
	node, err := steps.Node(specs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []infra.Step{base, node} {
		plan, err := runner.Plan(ctx, s, prov.DestructiveTypes())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := runner.Apply(ctx, plan); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Contains(env.VMNames(t, ctx), "ab-master-0") {
		t.Fatalf("the master VM was not made: %v", env.VMNames(t, ctx))
	}
	if err := l.RecordHost("10.0.0.10", "master", time.Now()); err != nil {
		t.Fatal(err)
	}

	var out strings.Builder
	var asked []string
	o := Options{Name: "ab", State: l, Candi: candi.FS, Provider: prov, Infra: runner, Cluster: c, Out: &out,
		Confirm: func(_ string, what []string) error { asked = what; return nil }}
	if err := Run(ctx, o); err != nil {
		t.Fatalf("abort: %v\n%s", err, out.String())
	}
	if strings.Join(asked, "; ") != "machine ab-master-0; the base infrastructure" {
		t.Errorf("confirmation asked for %q", asked)
	}
	if after := env.VMNames(t, ctx); !slices.Equal(after, before) {
		t.Errorf("VMs after abort %v, before the bootstrap %v", after, before)
	}
	if steps, _ := l.TerraformSteps(); len(steps) != 0 {
		t.Errorf("terraform states left: %v", steps)
	}
	if hosts, _ := l.TouchedHosts(); len(hosts) != 0 {
		t.Errorf("touched hosts left: %v", hosts)
	}
	out.Reset()
	if err := Run(ctx, o); err != nil || !strings.Contains(out.String(), "nothing to destroy") {
		t.Errorf("second abort: %v %q", err, out.String())
	}
}

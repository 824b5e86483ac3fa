package config

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const examplesDir = "../../examples"

// TestExamplesValidate loads the documented examples exactly as the README shows them.
func TestExamplesValidate(t *testing.T) {
	c, ps := loadProblems(t, LoadOptions{
		ConfigPaths:           []string{filepath.Join(examplesDir, "static-cluster.yml")},
		ConnectionConfigPaths: []string{filepath.Join(examplesDir, "connection.yml")},
		LookupEnv:             envMap(map[string]string{"SSH_PRIVATE_KEY": newSSHKey(t, "")}),
	})
	if ps != nil {
		t.Fatalf("examples do not validate:\n%v", ps)
	}
	cc := c.ClusterConfiguration
	if cc.ClusterType != ClusterTypeStatic || cc.PodSubnetCIDR != "10.111.0.0/16" || c.KubernetesVersion != "1.33" {
		t.Errorf("unexpected ClusterConfiguration %+v (version %q)", cc, c.KubernetesVersion)
	}
	if c.InitConfiguration == nil || c.InitConfiguration.Deckhouse.ImagesRepo != "registry.example.com/deckhouse/ce" {
		t.Errorf("InitConfiguration = %+v", c.InitConfiguration)
	}
	if c.StaticClusterConfiguration == nil || len(c.StaticClusterConfiguration.InternalNetworkCIDRs) != 1 {
		t.Errorf("StaticClusterConfiguration = %+v", c.StaticClusterConfiguration)
	}
	if len(c.NodeGroups) != 1 || c.NodeGroups[0].Metadata.Name != "worker" || *c.NodeGroups[0].Spec.StaticInstances.Count != 2 ||
		c.NodeGroups[0].Spec.NodeTemplate.Taints[0].Effect != "PreferNoSchedule" {
		t.Errorf("NodeGroups = %+v", c.NodeGroups)
	}
	if len(c.ModuleConfigs) != 1 || c.ModuleConfigs[0].Spec.Version != 2 {
		t.Errorf("ModuleConfigs = %+v", c.ModuleConfigs)
	}
	if len(c.Resources) != 1 || c.Resources[0].Kind != "Namespace" || c.Resources[0].Name != "team-a" || c.Resources[0].Index != 6 {
		t.Errorf("Resources = %+v", c.Resources)
	}
	if c.SSHConfig == nil || c.SSHConfig.SSHUser != "ubuntu" || c.SSHConfig.SSHPort != 22 || !strings.Contains(c.SSHConfig.SSHAgentPrivateKeys[0].Key, "OPENSSH PRIVATE KEY") {
		t.Errorf("SSHConfig = %+v", c.SSHConfig)
	}
	if len(c.SSHHosts) != 1 || c.SSHHosts[0].Host != "192.168.199.10" {
		t.Errorf("SSHHosts = %+v", c.SSHHosts)
	}
	if len(c.Documents) != 7 {
		t.Errorf("got %d documents, want 7 (5 config + 2 connection)", len(c.Documents))
	}
}

// TestBrokenExamples: each broken variant fails with precise messages.
func TestBrokenExamples(t *testing.T) {
	for _, tc := range []struct {
		file string
		want string
	}{
		{"overlapping-cidrs.yml", `
../../examples/broken/overlapping-cidrs.yml: document 1 (ClusterConfiguration), line 6: podSubnetCIDR: "10.111.0.0/16" overlaps serviceSubnetCIDR "10.111.0.0/24"; choose non-overlapping ranges
../../examples/broken/overlapping-cidrs.yml: document 2 (StaticClusterConfiguration), line 13: internalNetworkCIDRs[0]: "10.111.128.0/24" overlaps podSubnetCIDR "10.111.0.0/16" (ClusterConfiguration in ../../examples/broken/overlapping-cidrs.yml document 1); choose non-overlapping ranges`},
		{"cloud-without-provider.yml", `
../../examples/broken/cloud-without-provider.yml: document 1 (ClusterConfiguration), line 7: cloud.provider: clusterType Cloud with provider OpenStack needs a document of kind OpenStackClusterConfiguration, and there is none; this dhctl has no OpenStack provider; use a build with it, or clusterType: Static`},
		{"bad-registry.yml", `
../../examples/broken/bad-registry.yml: document 1 (ClusterConfiguration), line 8: kubernetesVersion: Kubernetes 1.28 is not supported by this dhctl; use one of: 1.33, or Automatic (= 1.33)
../../examples/broken/bad-registry.yml: document 1 (ClusterConfiguration), line 9: clusterDomian: unknown field; did you mean "clusterDomain"?
../../examples/broken/bad-registry.yml: document 2 (InitConfiguration), line 15: deckhouse.registryDockerCfg: is not valid base64; encode a docker config.json, e.g. base64 -w0 ~/.docker/config.json; it must look like {"auths":{"registry.example.com":{"auth":"<base64 of user:password>"}}}
../../examples/broken/bad-registry.yml: document 2 (InitConfiguration), line 16: deckhouse.registryCA: is not a PEM certificate; paste the CA certificate including the -----BEGIN CERTIFICATE----- and -----END CERTIFICATE----- lines (use a | block)`},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{filepath.Join(examplesDir, "broken", tc.file)}})
			if ps == nil {
				t.Fatal("broken example validated")
			}
			if got, want := ps.Error(), strings.TrimPrefix(tc.want, "\n"); got != want {
				t.Errorf("problems differ\n got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// The vSphere example validates with its provider's schema, and the provider's password is a
// secret: kept from logs and from `config render defaults`.
func TestVsphereExampleValidates(t *testing.T) {
	c, err := Load(context.Background(), LoadOptions{ConfigPaths: []string{filepath.Join(examplesDir, "vsphere-cluster.yml")}})
	if err != nil {
		t.Fatal(err)
	}
	if c.ProviderClusterConfiguration == nil || c.ProviderClusterConfiguration.Kind != "VsphereClusterConfiguration" {
		t.Fatalf("provider document: %+v", c.ProviderClusterConfiguration)
	}
	found := false
	for _, s := range c.SecretValues() {
		found = found || s == "change-me"
	}
	if !found {
		t.Errorf("the provider password is not among the secret values: %q", c.SecretValues())
	}
	out, err := c.RenderDefaults()
	if err != nil || strings.Contains(string(out), "change-me") {
		t.Errorf("render defaults shows the password (%v)", err)
	}
}

// A NodeGroup document named like one of the provider's nodeGroups is refused: dhctl makes that
// group itself from the entry.
func TestProviderNodeGroupAlsoADocument(t *testing.T) {
	example, err := os.ReadFile(filepath.Join(examplesDir, "vsphere-cluster.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, "config.yml", string(example)+"\n---\napiVersion: deckhouse.io/v1\nkind: NodeGroup\nmetadata:\n  name: worker\nspec:\n  nodeType: CloudPermanent\n")
	_, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{cfg}})
	if len(ps) != 1 || !strings.Contains(ps[0].Error(), "metadata.name: NodeGroup worker is also nodeGroups[0] of VsphereClusterConfiguration") ||
		!strings.HasSuffix(ps[0].Error(), "remove this document (set nodeTemplate in the nodeGroups entry), or rename it") {
		t.Errorf("problems = %v", ps)
	}
	c, err := Load(context.Background(), LoadOptions{ConfigPaths: []string{filepath.Join(examplesDir, "vsphere-cluster.yml")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := ProviderNodeGroupNames(c.ProviderClusterConfiguration); !slices.Equal(got, []string{"worker"}) {
		t.Errorf("ProviderNodeGroupNames = %v", got)
	}
}

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Valid documents the malformed cases are built from.
const (
	validCC = `apiVersion: deckhouse.io/v1
kind: ClusterConfiguration
clusterType: Static
podSubnetCIDR: 10.111.0.0/16
serviceSubnetCIDR: 10.222.0.0/16
`
	validInit = `apiVersion: deckhouse.io/v1
kind: InitConfiguration
deckhouse:
  imagesRepo: registry.example.com/deckhouse/ce
`
	validSSH = `apiVersion: dhctl.deckhouse.io/v1alpha1
kind: SSHConfig
sshUser: ubuntu
sshAgentPrivateKeys:
- key: {{ env "KEY" | quote }}
`
	validNG = `apiVersion: deckhouse.io/v1
kind: NodeGroup
metadata:
  name: worker
spec:
  nodeType: Static
`
)

type malformedCase struct {
	name      string
	config    string // --config config.yml (omitted when empty)
	resources string // --resources resources.yml
	conn      string // --connection-config connection.yml
	want      string // exact Problems.Error(), temp dir stripped
}

// runMalformed loads one case and returns the error text with the temp dir removed.
func runMalformed(t *testing.T, tc malformedCase, env map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var opts LoadOptions
	opts.LookupEnv = envMap(env)
	if tc.config != "" {
		opts.ConfigPaths = []string{write("config.yml", tc.config)}
	}
	if tc.resources != "" {
		opts.ResourcePaths = []string{write("resources.yml", tc.resources)}
	}
	if tc.conn != "" {
		opts.ConnectionConfigPaths = []string{write("connection.yml", tc.conn)}
	}
	if tc.config == "missing" {
		opts.ConfigPaths = []string{filepath.Join(dir, "nope.yml")}
	}
	_, ps := loadProblems(t, opts)
	if ps == nil {
		return ""
	}
	return strings.ReplaceAll(ps.Error(), dir+string(filepath.Separator), "")
}

func TestMalformedInputs(t *testing.T) {
	if len(malformedCases) < 30 {
		t.Fatalf("only %d malformed cases, want at least 30", len(malformedCases))
	}
	// Keys are made once: an encrypted OpenSSH key costs a bcrypt KDF run.
	env := map[string]string{
		"KEY":           newSSHKey(t, ""),
		"ENCRYPTED_KEY": newSSHKey(t, "right horse"),
	}
	seen := map[string]bool{}
	for _, tc := range malformedCases {
		if seen[tc.name] {
			t.Fatalf("duplicate case name %q", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			got := runMalformed(t, tc, env)
			if got == "" {
				t.Fatalf("loaded without problems, want:\n%s", tc.want)
			}
			if got != tc.want {
				t.Errorf("problems differ\n got: %s\nwant: %s", got, tc.want)
			}
			if strings.Contains(got, "right horse") || strings.Contains(got, "s3cret") || strings.Contains(got, "PRIVATE KEY-----\n") {
				t.Errorf("a secret leaked into the message: %s", got)
			}
		})
	}
}

var malformedCases = []malformedCase{
	{name: "yaml syntax", config: "apiVersion: deckhouse.io/v1\nkind: [ClusterConfiguration\n",
		want: `config.yml: document 1, line 1: YAML syntax: did not find expected ',' or ']'; fix the YAML syntax`},
	{name: "tab indentation", config: "apiVersion: deckhouse.io/v1\nkind: InitConfiguration\ndeckhouse:\n\timagesRepo: x\n",
		want: `config.yml: document 1, line 4: YAML syntax: found character that cannot start any token; fix the YAML syntax`},
	{name: "document is a list", config: "- a\n- b\n",
		want: `config.yml: document 1, line 1: a document must be a mapping with apiVersion and kind, not a list; start the document with apiVersion: and kind: lines`},
	{name: "document is a scalar", config: validCC + "---\nhello\n",
		want: `config.yml: document 2, line 7: a document must be a mapping with apiVersion and kind, not a string; start the document with apiVersion: and kind: lines`},
	{name: "missing apiVersion", config: "kind: ClusterConfiguration\nclusterType: Static\n",
		want: `config.yml: document 1 (ClusterConfiguration), line 1: apiVersion: required field is missing; every document needs apiVersion and kind, e.g. apiVersion: deckhouse.io/v1`},
	{name: "missing kind", config: "apiVersion: deckhouse.io/v1\nclusterType: Static\n",
		want: `config.yml: document 1, line 1: kind: required field is missing; every document needs apiVersion and kind, e.g. kind: ClusterConfiguration`},
	{name: "kind not a string", config: "apiVersion: deckhouse.io/v1\nkind: 5\n",
		want: `config.yml: document 1, line 2: kind: must be a non-empty string; e.g. kind: ClusterConfiguration`},
	{name: "unsupported apiVersion", config: strings.Replace(validCC, "deckhouse.io/v1", "deckhouse.io/v1alpha1", 1),
		want: `config.yml: document 1 (ClusterConfiguration), line 1: apiVersion: "deckhouse.io/v1alpha1" is not supported for kind ClusterConfiguration; use deckhouse.io/v1`},
	{name: "kind typo", config: validCC + "---\napiVersion: deckhouse.io/v1\nkind: InitConfigurtion\ndeckhouse: {}\n",
		want: `config.yml: document 2 (InitConfigurtion), line 8: kind: unknown kind "InitConfigurtion"; did you mean "InitConfiguration"?`},
	{name: "kind abbreviated", config: validCC + "---\napiVersion: deckhouse.io/v1\nkind: InitConfig\ndeckhouse:\n  imagesRepo: registry.example.com/deckhouse/ce\n",
		want: `config.yml: document 2 (InitConfig), line 8: kind: unknown kind "InitConfig"; did you mean "InitConfiguration"?`},
	{name: "kind abbreviated, static", config: validCC + "---\napiVersion: deckhouse.io/v1\nkind: StaticClusterConfig\ninternalNetworkCIDRs: [192.168.0.0/24]\n",
		want: `config.yml: document 2 (StaticClusterConfig), line 8: kind: unknown kind "StaticClusterConfig"; did you mean "StaticClusterConfiguration"?`},
	{name: "kind spelled out", conn: strings.Replace(validSSH, "kind: SSHConfig", "kind: SSHConfiguration", 1),
		want: `connection.yml: document 1 (SSHConfiguration), line 2: kind: unknown kind "SSHConfiguration"; did you mean "SSHConfig"?`},
	{name: "kind cut short", config: validCC + "---\napiVersion: deckhouse.io/v1\nkind: StaticCluster\ninternalNetworkCIDRs: [192.168.0.0/24]\n",
		want: `config.yml: document 2 (StaticCluster), line 8: kind: unknown kind "StaticCluster"; did you mean "StaticClusterConfiguration"?`},
	{name: "kind with a prefix", config: validCC + "---\napiVersion: deckhouse.io/v1\nkind: DhctlInitConfiguration\ndeckhouse: {}\n",
		want: `config.yml: document 2 (DhctlInitConfiguration), line 8: kind: unknown kind "DhctlInitConfiguration"; did you mean "InitConfiguration"?`},
	{name: "unknown field with suggestion", config: validCC + "podSubnetCIRD: 10.0.0.0/16\n",
		want: `config.yml: document 1 (ClusterConfiguration), line 6: podSubnetCIRD: unknown field; did you mean "podSubnetCIDR"?`},
	{name: "unknown field without suggestion", config: validCC + "foo: bar\n",
		want: `config.yml: document 1 (ClusterConfiguration), line 6: foo: unknown field; remove it or use one of: apiVersion, cloud, clusterDomain, clusterType, defaultCRI, encryptionAlgorithm, kind, kubernetesVersion, podSubnetCIDR, podSubnetNodeCIDRPrefix, proxy, serviceSubnetCIDR`},
	{name: "enum typo", config: strings.Replace(validCC, "Static", "Statc", 1),
		want: `config.yml: document 1 (ClusterConfiguration), line 3: clusterType: "Statc" is not one of: Static, Cloud; did you mean "Static"?`},
	{name: "required field missing", config: strings.Replace(validCC, "podSubnetCIDR: 10.111.0.0/16\n", "", 1),
		want: `config.yml: document 1 (ClusterConfiguration), line 1: podSubnetCIDR: required field is missing; add it, e.g. podSubnetCIDR: 10.111.0.0/16`},
	{name: "kubernetesVersion as number", config: validCC + "kubernetesVersion: 1.30\n",
		want: `config.yml: document 1 (ClusterConfiguration), line 6: kubernetesVersion: must be a string, not a number; quote it: "1.30"`},
	{name: "unsupported kubernetesVersion", config: validCC + "kubernetesVersion: \"1.29\"\n",
		want: `config.yml: document 1 (ClusterConfiguration), line 6: kubernetesVersion: Kubernetes 1.29 is not supported by this dhctl; use one of: 1.33, or Automatic (= 1.33)`},
	{name: "cidr pattern", config: strings.Replace(validCC, "10.111.0.0/16", "10.111.0/16", 1),
		want: `config.yml: document 1 (ClusterConfiguration), line 4: podSubnetCIDR: "10.111.0/16" is not valid; write an IPv4 CIDR such as 10.111.0.0/16`},
	{name: "cidr octet out of range", config: strings.Replace(validCC, "10.111.0.0/16", "10.300.0.0/16", 1),
		want: `config.yml: document 1 (ClusterConfiguration), line 4: podSubnetCIDR: "10.300.0.0/16" is not a valid IPv4 CIDR; write it as a.b.c.d/n with each number 0-255 and n 0-32, e.g. 10.111.0.0/16`},
	{name: "cidr host bits", config: strings.Replace(validCC, "10.111.0.0/16", "10.111.0.1/16", 1),
		want: `config.yml: document 1 (ClusterConfiguration), line 4: podSubnetCIDR: "10.111.0.1/16" has host bits set; use the network address 10.111.0.0/16`},
	{name: "pod and service overlap", config: strings.Replace(validCC, "10.222.0.0/16", "10.111.0.0/24", 1),
		want: `config.yml: document 1 (ClusterConfiguration), line 4: podSubnetCIDR: "10.111.0.0/16" overlaps serviceSubnetCIDR "10.111.0.0/24"; choose non-overlapping ranges`},
	{name: "internal network overlaps pods", config: validCC + "---\napiVersion: deckhouse.io/v1\nkind: StaticClusterConfiguration\ninternalNetworkCIDRs:\n- 192.168.0.0/24\n- 10.111.5.0/24\n",
		want: `config.yml: document 2 (StaticClusterConfiguration), line 11: internalNetworkCIDRs[1]: "10.111.5.0/24" overlaps podSubnetCIDR "10.111.0.0/16" (ClusterConfiguration in config.yml document 1); choose non-overlapping ranges`},
	{name: "node prefix too short", config: validCC + "podSubnetNodeCIDRPrefix: \"16\"\n",
		want: `config.yml: document 1 (ClusterConfiguration), line 6: podSubnetNodeCIDRPrefix: /16 per node does not fit into podSubnetCIDR 10.111.0.0/16; use a longer prefix than /16 (e.g. "24") or a wider podSubnetCIDR`},
	{name: "cloud without cloud section", config: strings.Replace(validCC, "Static", "Cloud", 1),
		want: `config.yml: document 1 (ClusterConfiguration), line 1: cloud: required field is missing for clusterType: Cloud; add cloud.provider (and cloud.prefix)`},
	{name: "cloud without provider document", config: strings.Replace(validCC, "Static", "Cloud", 1) + "cloud:\n  provider: vSphere\n  prefix: dev\n",
		want: `config.yml: document 1 (ClusterConfiguration), line 7: cloud.provider: clusterType Cloud with provider vSphere needs a document of kind VsphereClusterConfiguration, and there is none; add a document of kind VsphereClusterConfiguration to a --config file`},
	{name: "cloud with a provider not built in", config: strings.Replace(validCC, "Static", "Cloud", 1) + "cloud:\n  provider: OpenStack\n  prefix: dev\n",
		want: `config.yml: document 1 (ClusterConfiguration), line 7: cloud.provider: clusterType Cloud with provider OpenStack needs a document of kind OpenStackClusterConfiguration, and there is none; this dhctl has no OpenStack provider; use a build with it, or clusterType: Static`},
	{name: "static with cloud section", config: validCC + "cloud:\n  provider: OpenStack\n",
		want: `config.yml: document 1 (ClusterConfiguration), line 6: cloud: is only for clusterType: Cloud; remove the cloud section or set clusterType: Cloud`},
	{name: "provider document without schema", config: validCC + "---\napiVersion: deckhouse.io/v1\nkind: OpenStackClusterConfiguration\nsshPublicKey: x\n",
		want: `config.yml: document 2 (OpenStackClusterConfiguration), line 8: kind: no schema for provider document OpenStackClusterConfiguration; providers this dhctl knows: VsphereClusterConfiguration`},
	{name: "two ClusterConfigurations", config: validCC + "---\n" + validCC,
		want: `config.yml: document 2 (ClusterConfiguration), line 7: a second ClusterConfiguration document (the first is config.yml document 1); keep only one`},
	{name: "no ClusterConfiguration", config: validInit,
		want: `no ClusterConfiguration document in the --config files; add one with apiVersion: deckhouse.io/v1, kind: ClusterConfiguration`},
	{name: "registryCA not PEM", config: validCC + "---\n" + validInit + "  registryCA: MIIBszCCAVmgAwIBAgIU\n",
		want: `config.yml: document 2 (InitConfiguration), line 11: deckhouse.registryCA: is not a PEM certificate; paste the CA certificate including the -----BEGIN CERTIFICATE----- and -----END CERTIFICATE----- lines (use a | block)`},
	{name: "registryDockerCfg not base64", config: validCC + "---\n" + validInit + "  registryDockerCfg: '{\"auths\":{}}'\n",
		want: `config.yml: document 2 (InitConfiguration), line 11: deckhouse.registryDockerCfg: is not valid base64; encode a docker config.json, e.g. base64 -w0 ~/.docker/config.json; it must look like {"auths":{"registry.example.com":{"auth":"<base64 of user:password>"}}}`},
	{name: "registryDockerCfg not JSON", config: validCC + "---\n" + validInit + "  registryDockerCfg: dXNlcjpzM2NyZXQ=\n",
		want: `config.yml: document 2 (InitConfiguration), line 11: deckhouse.registryDockerCfg: is base64 but does not decode to JSON; encode a docker config.json, e.g. base64 -w0 ~/.docker/config.json; it must look like {"auths":{"registry.example.com":{"auth":"<base64 of user:password>"}}}`},
	{name: "registryDockerCfg without the registry", config: validCC + "---\n" + validInit + "  registryDockerCfg: eyJhdXRocyI6eyJvdGhlci5leGFtcGxlLmNvbSI6eyJhdXRoIjoiZFhObGNqcHpNMk55WlhRPSJ9fX0=\n",
		want: `config.yml: document 2 (InitConfiguration), line 11: deckhouse.registryDockerCfg: has no credentials for registry.example.com, the registry of imagesRepo; add an auths entry for registry.example.com`},
	{name: "registryScheme typo", config: validCC + "---\n" + validInit + "  registryScheme: https\n",
		want: `config.yml: document 2 (InitConfiguration), line 11: deckhouse.registryScheme: "https" is not one of: HTTP, HTTPS; did you mean "HTTPS"?`},
	{name: "nodeType typo", config: validCC + "---\n" + strings.Replace(validNG, "nodeType: Static", "nodeType: Statik", 1),
		want: `config.yml: document 2 (NodeGroup), line 12: spec.nodeType: "Statik" is not one of: CloudEphemeral, CloudPermanent, CloudStatic, Static; did you mean "Static"?`},
	{name: "cloud node group in static cluster", config: validCC + "---\n" + strings.Replace(validNG, "nodeType: Static", "nodeType: CloudEphemeral", 1),
		want: "config.yml: document 2 (NodeGroup), line 11: spec.cloudInstances: required field is missing for nodeType CloudEphemeral; add cloudInstances with classReference, minPerZone and maxPerZone\nconfig.yml: document 2 (NodeGroup), line 12: spec.nodeType: nodeType CloudEphemeral needs clusterType: Cloud, but the cluster is Static; use nodeType: Static"},
	{name: "taint effect", config: validCC + "---\n" + validNG + "  nodeTemplate:\n    taints:\n    - key: dedicated\n      effect: NoSchedul\n",
		want: `config.yml: document 2 (NodeGroup), line 16: spec.nodeTemplate.taints[0].effect: "NoSchedul" is not one of: NoSchedule, PreferNoSchedule, NoExecute; did you mean "NoSchedule"?`},
	{name: "label key", config: validCC + "---\n" + validNG + "  nodeTemplate:\n    labels:\n      -bad-: x\n",
		want: `config.yml: document 2 (NodeGroup), line 15: spec.nodeTemplate.labels.-bad-: "-bad-" is not a valid label key; use [prefix/]name: name up to 63 letters, digits, '-', '_', '.', starting and ending with a letter or digit`},
	{name: "duplicate node group", config: validCC + "---\n" + validNG + "---\n" + validNG,
		want: `config.yml: document 3 (NodeGroup), line 17: metadata.name: NodeGroup worker is defined twice (also config.yml document 2); rename or remove one`},
	{name: "module settings without version", config: validCC + "---\napiVersion: deckhouse.io/v1alpha1\nkind: ModuleConfig\nmetadata:\n  name: global\nspec:\n  settings:\n    a: b\n",
		want: `config.yml: document 2 (ModuleConfig), line 11: spec.version: required field is missing when spec.settings is set; add spec.version, the version of the module's settings schema (e.g. 1)`},
	{name: "module enabled as string", config: validCC + "---\napiVersion: deckhouse.io/v1alpha1\nkind: ModuleConfig\nmetadata:\n  name: cni-flannel\nspec:\n  enabled: \"yes\"\n",
		want: `config.yml: document 2 (ModuleConfig), line 12: spec.enabled: must be true or false, not a string`},
	{name: "ssh user missing and port zero", conn: strings.Replace(validSSH, "sshUser: ubuntu\n", "sshPort: 0\n", 1),
		want: "connection.yml: document 1 (SSHConfig), line 1: sshUser: required field is missing; add it, e.g. sshUser: ubuntu\nconnection.yml: document 1 (SSHConfig), line 3: sshPort: must be at least 1"},
	{name: "sudo password as number", conn: validSSH + "sudoPassword: 123456\n",
		want: `connection.yml: document 1 (SSHConfig), line 6: sudoPassword: must be a string, not a number`},
	{name: "sudo password unknown field typo", conn: validSSH + "sudoPasword: s3cret\n",
		want: `connection.yml: document 1 (SSHConfig), line 6: sudoPasword: unknown field; did you mean "sudoPassword"?`},
	{name: "ssh key not a key", conn: strings.Replace(validSSH, `{{ env "KEY" | quote }}`, "not-a-key", 1),
		want: `connection.yml: document 1 (SSHConfig), line 5: sshAgentPrivateKeys[0].key: is not a private key in PEM or OpenSSH format; paste the whole private key file, including the -----BEGIN ... PRIVATE KEY----- line, as a | block`},
	{name: "ssh key wrong passphrase", conn: strings.Replace(validSSH, `{{ env "KEY" | quote }}`, `{{ env "ENCRYPTED_KEY" | quote }}`+"\n  passphrase: wrong horse", 1),
		want: `connection.yml: document 1 (SSHConfig), line 6: sshAgentPrivateKeys[0].passphrase: does not decrypt the key; check the passphrase`},
	{name: "bastion user without host", conn: validSSH + "sshBastionUser: jump\n",
		want: `connection.yml: document 1 (SSHConfig), line 6: sshBastionUser: is set, but sshBastionHost is not; add sshBastionHost, or remove sshBastionUser`},
	{name: "ssh extra args", conn: validSSH + "sshExtraArgs: -o ServerAliveInterval=5\n",
		want: `connection.yml: document 1 (SSHConfig), line 6: sshExtraArgs: is not supported: dhctl does not run an ssh binary to pass arguments to; remove it; use sshPort, sshBastionHost/Port/User, sshAgentPrivateKeys, --ssh-connect-timeout or --ssh-known-hosts for what the arguments did`},
	{name: "duplicate ssh host", conn: "apiVersion: dhctl.deckhouse.io/v1alpha1\nkind: SSHHost\nhost: 10.0.0.1\n---\napiVersion: dhctl.deckhouse.io/v1alpha1\nkind: SSHHost\nhost: 10.0.0.1\n",
		want: `connection.yml: document 2 (SSHHost), line 7: host: host 10.0.0.1 is listed twice (also connection.yml document 1); remove one of the SSHHost documents`},
	{name: "ssh host bad", conn: "apiVersion: dhctl.deckhouse.io/v1alpha1\nkind: SSHHost\nhost: 'user@10.0.0.1'\n",
		want: `connection.yml: document 1 (SSHHost), line 3: host: "user@10.0.0.1" is not valid; write an IP address or a DNS name such as 192.168.199.10`},
	{name: "other kind in connection config", conn: validNG,
		want: `connection.yml: document 1 (NodeGroup), line 2: kind: NodeGroup does not belong in --connection-config; it holds only SSHConfig and SSHHost documents; pass this one with --config`},
	{name: "cluster configuration in resources", config: validCC, resources: validCC,
		want: `resources.yml: document 1 (ClusterConfiguration), line 2: kind: ClusterConfiguration does not belong in --resources; pass it with --config (SSHConfig and SSHHost with --connection-config)`},
	{name: "template missing variable", config: validCC + "---\napiVersion: deckhouse.io/v1\nkind: InitConfiguration\ndeckhouse:\n  imagesRepo: {{ env \"REGISTRY\" }}/deckhouse\n",
		want: `config.yml: line 10: environment variable REGISTRY is not set; export REGISTRY, or use {{ envOr "REGISTRY" "default" }}`},
	{name: "template syntax", config: validCC + "clusterDomain: {{ env \"DOMAIN\" }\n",
		want: `config.yml: line 6: template syntax: unexpected "}" in operand; fix the {{ ... }} expression, or escape a literal {{ as {{ "{{" }}`},
	{name: "template printf width", config: validCC + "clusterDomain: {{ printf \"%999999999d\" 1 }}\n",
		want: `config.yml: line 6: printf width or precision 999999999 is larger than 100; use at most 100`},
	{name: "template printf star width", config: validCC + "clusterDomain: {{ printf \"%*d\" 999999999 1 }}\n",
		want: `config.yml: line 6: printf widths and precisions must be written in the format, not taken from an argument (*); write a number up to 100`},
	{name: "template values doubling", config: validCC + "{{ $a := \"xxxxxxxxxxxxxxxx\" }}" + strings.Repeat("{{ $a = printf \"%s%s\" $a $a }}", 40) + "\n",
		want: `config.yml: line 6: the template functions of one run may take and make at most 8 MiB of text, and these need more; check the template for a value that grows with every action, such as {{ $a = print $a $a }}`},
	{name: "template quote doubling", config: validCC + "{{ $a := \"\\\"\\\"\" }}" + strings.Repeat("{{ $a = quote $a }}", 40) + "\n",
		want: `config.yml: line 6: the template functions of one run may take and make at most 8 MiB of text, and these need more; check the template for a value that grows with every action, such as {{ $a = print $a $a }}`},
	{name: "template print doubling", config: validCC + "{{ $a := \"xxxxxxxxxxxxxxxx\" }}" + strings.Repeat("{{ $a = print $a $a }}", 40) + "\n",
		want: `config.yml: line 6: the template functions of one run may take and make at most 8 MiB of text, and these need more; check the template for a value that grows with every action, such as {{ $a = print $a $a }}`},
	{name: "template builtin not allowed", config: validCC + "clusterDomain: {{ html \"<x>\" }}\n",
		want: `config.yml: line 6: template uses "html", which config files may not use; only env, envOr, quote, printf, print, eq, ne, and, or, not and {{ if }} are allowed`},
	{name: "template len not allowed", config: validCC + "{{ if len (env \"X\") }}{{ end }}\n",
		want: `config.yml: line 6: template uses "len", which config files may not use; only env, envOr, quote, printf, print, eq, ne, and, or, not and {{ if }} are allowed`},
	{name: "template dense actions", config: validCC + strings.Repeat("{{ 1 }}", 50_000),
		want: `config.yml: the {{ }} expressions of the templates of one run may hold at most 256 KiB together, and this file's hold 341 KiB; templates are for substituting a few values; write the rest out`},
	{name: "template printed many times", config: validCC + "{{ $a := printf \"%s%s%s%s%s%s%s%s\" \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\" \"x\" \"x\" \"x\" \"x\" \"x\" \"x\" \"x\" }}" + strings.Repeat("{{ $a = printf \"%s%s\" $a $a }}", 13) + "# " + strings.Repeat("{{ $a }}", 20) + "\n",
		want: `config.yml: the templates of one run render to more than 16 MiB; check the template for a value printed over and over`},
	{name: "duplicate key", config: validCC + "clusterType: Cloud\n",
		want: `config.yml: document 1 (ClusterConfiguration), line 6: clusterType: duplicate field; keep one of the two`},
	{name: "merge key", config: "apiVersion: deckhouse.io/v1\nkind: ClusterConfiguration\n<<: {clusterType: Static}\n",
		want: `config.yml: document 1 (ClusterConfiguration), line 3: YAML merge keys (<<) are not supported; write the merged fields out`},
	{name: "alias bomb", config: "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e]\n",
		want: `config.yml: document 1, line 6: the documents expand to more than 500000 values, the limit of one run (all files, YAML aliases expanded); write anchors and aliases out; is this the right file?`},
	// Each document is under any per-document cap; together they are over the run's.
	{name: "aliases across documents", config: validCC + strings.Repeat("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\na: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d]\n", 7),
		want: `config.yml: document 7 (ConfigMap), line 58: the documents expand to more than 500000 values, the limit of one run (all files, YAML aliases expanded); write anchors and aliases out; is this the right file?`},
	{name: "nesting too deep", config: validCC + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: " + strings.Repeat("{a: ", 300) + "1" + strings.Repeat("}", 300) + "\n",
		want: `config.yml: document 2 (ConfigMap), line 10: values nest more than 256 levels deep; is this the right file? documents nest a few levels`},
	{name: "dense YAML", resources: "[" + strings.Repeat("x,", 300_000) + "x]\n",
		want: `resources.yml: holds too much YAML: a quick count finds room for up to 600007 values, and one run may load at most 500000 (all files, aliases expanded); is this the right file? dhctl's documents hold a few hundred values`},
	{name: "null required field", config: strings.Replace(validCC, "podSubnetCIDR: 10.111.0.0/16", "podSubnetCIDR: null", 1),
		want: `config.yml: document 1 (ClusterConfiguration), line 4: podSubnetCIDR: must not be null; write a value (an empty value is null)`},
	{name: "NaN", conn: validSSH + "sshPort: .nan\n",
		want: `connection.yml: document 1 (SSHConfig), line 6: sshPort: NaN and infinite numbers are not allowed; write a finite number or quote the text`},
	{name: "crlf line endings", config: strings.ReplaceAll(validCC+"bogus: 1\n", "\n", "\r\n"),
		want: `config.yml: document 1 (ClusterConfiguration), line 6: bogus: unknown field; remove it or use one of: apiVersion, cloud, clusterDomain, clusterType, defaultCRI, encryptionAlgorithm, kind, kubernetesVersion, podSubnetCIDR, podSubnetNodeCIDRPrefix, proxy, serviceSubnetCIDR`},
	{name: "empty documents are counted", config: "---\n---\n" + validCC + "---\n---\nkind: Foo\n",
		want: `config.yml: document 4 (Foo), line 10: apiVersion: required field is missing; every document needs apiVersion and kind, e.g. apiVersion: deckhouse.io/v1`},
	{name: "null enum", config: strings.Replace(validCC, "clusterType: Static", "clusterType:", 1),
		want: `config.yml: document 1 (ClusterConfiguration), line 3: clusterType: must not be null; write one of: Static, Cloud`},
	{name: "fractional integer", config: validCC + "---\napiVersion: deckhouse.io/v1alpha1\nkind: ModuleConfig\nmetadata: {name: a}\nspec: {version: 1.5}\n",
		want: `config.yml: document 2 (ModuleConfig), line 10: spec.version: must be an integer, not a fractional number`},
	{name: "integer too large", config: validCC + "---\napiVersion: deckhouse.io/v1alpha1\nkind: ModuleConfig\nmetadata: {name: a}\nspec: {version: 1e300}\n",
		want: `config.yml: document 2 (ModuleConfig), line 10: spec.version: number 1e+300 does not fit a field of type int; write a smaller value`},
	{name: "file not found", config: "missing",
		want: `nope.yml: cannot read the file: no such file or directory; check the path given to --config`},
}

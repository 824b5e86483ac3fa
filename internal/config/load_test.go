package config

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"
)

func TestDefaultsApplied(t *testing.T) {
	cfg := writeFile(t, "config.yml", validCC+"---\n"+validInit)
	conn := writeFile(t, "conn.yml", validSSH)
	c, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{cfg}, ConnectionConfigPaths: []string{conn}, LookupEnv: envMap(map[string]string{"KEY": newSSHKey(t, "")})})
	if ps != nil {
		t.Fatal(ps)
	}
	cc := c.ClusterConfiguration
	for name, got := range map[string]string{
		"podSubnetNodeCIDRPrefix": cc.PodSubnetNodeCIDRPrefix, "clusterDomain": cc.ClusterDomain,
		"defaultCRI": cc.DefaultCRI, "kubernetesVersion": cc.KubernetesVersion,
		"registryScheme": c.InitConfiguration.Deckhouse.RegistryScheme,
	} {
		want := map[string]string{"podSubnetNodeCIDRPrefix": "24", "clusterDomain": "cluster.local", "defaultCRI": "Containerd",
			"kubernetesVersion": "Automatic", "registryScheme": "HTTPS"}[name]
		if got != want {
			t.Errorf("%s = %q, want default %q", name, got, want)
		}
	}
	if c.SSHConfig.SSHPort != 22 {
		t.Errorf("sshPort = %d, want default 22", c.SSHConfig.SSHPort)
	}
	if c.KubernetesVersion != "1.33" {
		t.Errorf("Automatic resolved to %q, want the version map's default 1.33", c.KubernetesVersion)
	}
	// The defaults are in the documents too (what render defaults prints), typed as written.
	if got := c.Documents[2].Object["sshPort"]; got != int64(22) {
		t.Errorf("SSHConfig document sshPort = %#v, want int64(22)", got)
	}
	out, err := c.RenderDefaults()
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	for _, want := range []string{"apiVersion: deckhouse.io/v1\nkind: ClusterConfiguration\nclusterDomain: cluster.local\n", "podSubnetNodeCIDRPrefix: \"24\"", "registryScheme: HTTPS", "sshPort: 22", "key: <redacted>", "\n---\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered defaults lack %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "PRIVATE KEY") {
		t.Errorf("rendered defaults contain the private key:\n%s", text)
	}
	// What it renders loads again to the same model.
	again := writeFile(t, "again.yml", strings.ReplaceAll(text, "key: <redacted>", "key: {{ env \"KEY\" | quote }}"))
	c2, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{again}, LookupEnv: envMap(map[string]string{"KEY": newSSHKey(t, "")})})
	if ps != nil {
		t.Fatalf("rendered defaults do not load again: %v", ps)
	}
	if c2.ClusterConfiguration != c.ClusterConfiguration {
		t.Errorf("round trip changed ClusterConfiguration: %+v vs %+v", c2.ClusterConfiguration, c.ClusterConfiguration)
	}
}

func TestDefaultsDoNotOverrideUserValues(t *testing.T) {
	cfg := writeFile(t, "config.yml", validCC+"clusterDomain: corp.local\npodSubnetNodeCIDRPrefix: \"26\"\ndefaultCRI: NotManaged\n")
	c, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{cfg}})
	if ps != nil {
		t.Fatal(ps)
	}
	if cc := c.ClusterConfiguration; cc.ClusterDomain != "corp.local" || cc.PodSubnetNodeCIDRPrefix != "26" || cc.DefaultCRI != "NotManaged" {
		t.Errorf("user values overridden: %+v", cc)
	}
}

func TestAllProblemsInOneRunAcrossFiles(t *testing.T) {
	a := writeFile(t, "a.yml", strings.Replace(validCC, "10.222.0.0/16", "10.111.0.0/24", 1)+"kubernetesVersion: \"1.20\"\n")
	b := writeFile(t, "b.yml", validInit+"  registryCA: nope\n---\n"+strings.Replace(validNG, "Static", "Statik", 1))
	conn := writeFile(t, "c.yml", "apiVersion: dhctl.deckhouse.io/v1alpha1\nkind: SSHHost\nhost: ''\n")
	_, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{a, b}, ConnectionConfigPaths: []string{conn}})
	if len(ps) != 5 {
		t.Fatalf("want 5 problems, got %d:\n%v", len(ps), ps)
	}
	// Ordered by file as given, then document and line.
	wantFiles := []string{a, a, b, b, conn}
	wantPaths := []string{"podSubnetCIDR", "kubernetesVersion", "deckhouse.registryCA", "spec.nodeType", "host"}
	wantDocs := []int{1, 1, 1, 2, 1}
	for i, p := range ps {
		if p.File != wantFiles[i] || p.Path != wantPaths[i] || p.Document != wantDocs[i] {
			t.Errorf("problem %d = %s (file %s doc %d path %s)", i, p.Error(), p.File, p.Document, p.Path)
		}
	}
}

func TestLineAndColumn(t *testing.T) {
	cfg := writeFile(t, "config.yml", `# comment
apiVersion: deckhouse.io/v1
kind: ClusterConfiguration
clusterType: Static
podSubnetCIDR: 10.111.0.0/16
serviceSubnetCIDR: 10.222.0.0/16
proxy:
  noProxy:
  - example.com
  - ""
---
apiVersion: deckhouse.io/v1
kind: NodeGroup
metadata:
  name: worker
spec:
  nodeType: Static
  nodeTemplate:
    taints:
    - key: a
      effect: NoSchedule
    - key: b
      efect: NoSchedule
`)
	_, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{cfg}})
	type loc struct {
		doc, line, col int
		path           string
	}
	want := []loc{{1, 10, 5, "proxy.noProxy[1]"}, {2, 22, 7, "spec.nodeTemplate.taints[1].effect"}, {2, 23, 7, "spec.nodeTemplate.taints[1].efect"}}
	if len(ps) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(want), ps)
	}
	for i, w := range want {
		p := ps[i]
		if (loc{p.Document, p.Line, p.Column, p.Path}) != w {
			t.Errorf("problem %d at doc %d %d:%d %s, want %+v (%s)", i, p.Document, p.Line, p.Column, p.Path, w, p.Error())
		}
	}
}

func TestMultipleConfigFiles(t *testing.T) {
	a := writeFile(t, "cluster.yml", validCC)
	b := writeFile(t, "init.yml", validInit+"---\n"+validNG)
	r := writeFile(t, "resources.yml", validNG+"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n")
	c, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{a, b}, ResourcePaths: []string{r}})
	if ps != nil {
		t.Fatal(ps)
	}
	if len(c.Documents) != 3 || c.Documents[0].File != a || c.Documents[1].File != b || c.Documents[2].Index != 2 {
		t.Errorf("documents not in input order: %+v", c.Documents)
	}
	if len(c.NodeGroups) != 1 || len(c.Resources) != 2 || c.Resources[0].Kind != "NodeGroup" || c.Resources[1].Kind != "ConfigMap" {
		t.Errorf("NodeGroups %d, Resources %+v", len(c.NodeGroups), c.Resources)
	}
	// A resource is kept as written: no defaults are added to what will be created.
	if _, ok := c.Resources[0].Object["spec"].(map[string]any)["staticInstances"]; ok {
		t.Error("resource got fields it did not have")
	}
}

func TestTemplateRendering(t *testing.T) {
	cfg := writeFile(t, "config.yml", `apiVersion: deckhouse.io/v1
kind: ClusterConfiguration
clusterType: Static
podSubnetCIDR: {{ env "POD_CIDR" }}
serviceSubnetCIDR: {{ envOr "SERVICE_CIDR" "10.222.0.0/16" }}
clusterDomain: {{ env "DOMAIN" | quote }}
{{ if env "WITH_PROXY" }}proxy:
  httpProxy: {{ quote (env "PROXY") }}{{ end }}
`)
	env := map[string]string{"POD_CIDR": "10.100.0.0/16", "DOMAIN": "corp.local", "WITH_PROXY": "yes", "PROXY": "http://user:p@ss@proxy:3128"}
	c, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{cfg}, LookupEnv: envMap(env)})
	if ps != nil {
		t.Fatal(ps)
	}
	cc := c.ClusterConfiguration
	if cc.PodSubnetCIDR != "10.100.0.0/16" || cc.ServiceSubnetCIDR != "10.222.0.0/16" || cc.ClusterDomain != "corp.local" || cc.Proxy == nil || cc.Proxy.HTTPProxy != env["PROXY"] {
		t.Errorf("template not rendered as expected: %+v %+v", cc, cc.Proxy)
	}
	// nil LookupEnv is an empty environment, not the process's.
	os.Setenv("POD_CIDR_FROM_PROCESS", "x")
	_, ps = loadProblems(t, LoadOptions{ConfigPaths: []string{cfg}})
	if len(ps) != 1 || ps[0].Message != "environment variable POD_CIDR is not set" || ps[0].Line != 4 {
		t.Errorf("missing variable problems = %v", ps)
	}
	// A file without {{ is not a template, so a literal "{{" inside quotes elsewhere is untouched.
	plain := writeFile(t, "plain.yml", validCC+"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {t: 'a }} b'}\n")
	if _, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{plain}}); ps != nil {
		t.Errorf("plain file: %v", ps)
	}
}

func TestProviderDocumentRules(t *testing.T) {
	reg, err := NewRegistry(os.DirFS("../../candi"))
	if err != nil {
		t.Fatal(err)
	}
	// What a provider package does to add its ClusterConfiguration kind.
	err = reg.Add("OpenStackClusterConfiguration", "deckhouse.io/v1", []byte(`
type: object
additionalProperties: false
required: [apiVersion, kind, layout]
properties:
  apiVersion: {type: string}
  kind: {type: string}
  layout: {type: string}
  sshPublicKey: {type: string, default: none}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Add("OpenStackClusterConfiguration", "deckhouse.io/v1", []byte("type: object")); err == nil {
		t.Error("registering a kind twice must fail")
	}
	if err := reg.Add("VsphereClusterConfiguration", "deckhouse.io/v1", []byte("type: object")); err == nil {
		t.Error("registering a built-in provider kind again must fail")
	}
	cloudCC := strings.Replace(validCC, "Static", "Cloud", 1) + "cloud:\n  provider: OpenStack\n  prefix: dev\n"
	openstack := "apiVersion: deckhouse.io/v1\nkind: OpenStackClusterConfiguration\nlayout: Standard\n"

	cfg := writeFile(t, "cloud.yml", cloudCC+"---\n"+openstack)
	c, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{cfg}, Schemas: reg})
	if ps != nil {
		t.Fatal(ps)
	}
	if c.ProviderClusterConfiguration == nil || c.ProviderClusterConfiguration.Object["sshPublicKey"] != "none" {
		t.Errorf("provider document = %+v", c.ProviderClusterConfiguration)
	}

	// The reverse: a provider document in a Static cluster.
	cfg = writeFile(t, "static.yml", validCC+"---\n"+openstack)
	_, ps = loadProblems(t, LoadOptions{ConfigPaths: []string{cfg}, Schemas: reg})
	want := "static.yml: document 2 (OpenStackClusterConfiguration), line 7: this document needs clusterType: Cloud, but ClusterConfiguration (" + cfg + " document 1) says Static; remove this document or set clusterType: Cloud with cloud.provider"
	if len(ps) != 1 || !strings.HasSuffix(ps[0].Error(), want) {
		t.Errorf("got %v\nwant ...%s", ps, want)
	}

	// A Cloud cluster whose provider document has another provider's kind
	// (the built-in vSphere schema, so the document is otherwise valid).
	if err := reg.Add("AWSClusterConfiguration", "deckhouse.io/v1", []byte("type: object\nproperties: {apiVersion: {type: string}, kind: {type: string}}\nadditionalProperties: false\n")); err != nil {
		t.Fatal(err)
	}
	cfg = writeFile(t, "mismatch.yml", cloudCC+"---\napiVersion: deckhouse.io/v1\nkind: AWSClusterConfiguration\n")
	_, ps = loadProblems(t, LoadOptions{ConfigPaths: []string{cfg}, Schemas: reg})
	if len(ps) != 1 || !strings.Contains(ps[0].Error(), "kind: AWSClusterConfiguration does not match cloud.provider OpenStack") {
		t.Errorf("mismatch problems = %v", ps)
	}
	// Two provider documents.
	cfg = writeFile(t, "two.yml", cloudCC+"---\n"+openstack+"---\n"+openstack)
	_, ps = loadProblems(t, LoadOptions{ConfigPaths: []string{cfg}, Schemas: reg})
	if len(ps) != 1 || !strings.Contains(ps[0].Error(), "a second OpenStackClusterConfiguration document") {
		t.Errorf("duplicate provider problems = %v", ps)
	}

	// A build without any provider schema says so.
	bare, err := NewRegistry(onlyOpenAPI{os.DirFS("../../candi")})
	if err != nil {
		t.Fatal(err)
	}
	cfg = writeFile(t, "bare.yml", validCC+"---\n"+openstack)
	_, ps = loadProblems(t, LoadOptions{ConfigPaths: []string{cfg}, Schemas: bare})
	if len(ps) != 1 || !strings.HasSuffix(ps[0].Error(), "kind: no schema for provider document OpenStackClusterConfiguration; this dhctl has no cloud provider built in; use clusterType: Static") {
		t.Errorf("no providers built in: %v", ps)
	}
}

// onlyOpenAPI is candi without its cloud-providers directory: a dhctl built
// without providers.
type onlyOpenAPI struct{ fs.FS }

func (o onlyOpenAPI) Open(name string) (fs.File, error) {
	if name == "cloud-providers" || strings.HasPrefix(name, "cloud-providers/") {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return o.FS.Open(name)
}

// newCACertificate makes a real self-signed CA certificate in PEM.
func newCACertificate(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "registry CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestRegistryCA(t *testing.T) {
	ca := newCACertificate(t)
	indent := func(s string) string { return "    " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n    ") + "\n" }
	for _, tc := range []struct {
		name, extra, want string
	}{
		{"valid CA", "  registryCA: |\n" + indent(ca), ""},
		{"two CAs", "  registryCA: |\n" + indent(ca+ca), ""},
		{"HTTP with CA", "  registryScheme: HTTP\n  registryCA: |\n" + indent(ca), "deckhouse.registryCA: is set, but registryScheme is HTTP, which uses no TLS; set registryScheme: HTTPS, or remove registryCA"},
		{"private key instead", "  registryCA: |\n" + indent("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"), `deckhouse.registryCA: holds a PEM block of type "PRIVATE KEY"; only CERTIFICATE blocks belong here`},
		{"garbage after CA", "  registryCA: |\n" + indent(ca+"trailing"), "deckhouse.registryCA: has text after the last PEM certificate"},
		{"corrupt certificate", "  registryCA: |\n" + indent("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"), "deckhouse.registryCA: PEM certificate 1 does not parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeFile(t, "config.yml", validCC+"---\n"+validInit+tc.extra)
			_, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{cfg}})
			if tc.want == "" {
				if ps != nil {
					t.Fatal(ps)
				}
				return
			}
			if len(ps) != 1 || !strings.Contains(ps[0].Error(), tc.want) {
				t.Errorf("got %v, want %q", ps, tc.want)
			}
		})
	}
}

func TestDockerCfg(t *testing.T) {
	for _, tc := range []struct{ name, cfg, want string }{
		{"valid", `{"auths":{"registry.example.com":{"auth":"dXNlcjpwYXNz"}}}`, ""},
		{"username and password", `{"auths":{"registry.example.com":{"username":"u","password":"hunter2"}}}`, ""},
		{"no auths", `{"credsStore":"x"}`, `decodes to JSON without an "auths" object`},
		{"auths is a list", `{"auths":[]}`, "decodes to JSON of the wrong shape"},
		{"auth not base64", `{"auths":{"registry.example.com":{"auth":"bob:hunter2"}}}`, `auths["registry.example.com"].auth is not base64 of user:password`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := base64Std(tc.cfg)
			cfg := writeFile(t, "config.yml", validCC+"---\n"+validInit+"  registryDockerCfg: "+enc+"\n")
			_, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{cfg}})
			if tc.want == "" {
				if ps != nil {
					t.Fatal(ps)
				}
				return
			}
			if len(ps) != 1 || !strings.Contains(ps[0].Error(), tc.want) {
				t.Fatalf("got %v, want %q", ps, tc.want)
			}
			if strings.Contains(ps[0].Error(), enc) || strings.Contains(ps[0].Error(), "hunter2") {
				t.Errorf("secret echoed: %s", ps[0].Error())
			}
		})
	}
}

func TestSSHKeyWithPassphrase(t *testing.T) {
	conn := writeFile(t, "conn.yml", strings.Replace(validSSH, `{{ env "KEY" | quote }}`, `{{ env "KEY" | quote }}`+"\n  passphrase: {{ env \"PASS\" | quote }}", 1)+"sudoPassword: s3cret\n")
	key := newSSHKey(t, "right horse")
	c, ps := loadProblems(t, LoadOptions{ConnectionConfigPaths: []string{conn}, LookupEnv: envMap(map[string]string{"KEY": key, "PASS": "right horse"})})
	if ps != nil {
		t.Fatal(ps)
	}
	if c.SSHConfig.SSHAgentPrivateKeys[0].Passphrase != "right horse" || c.SSHConfig.SudoPassword != "s3cret" {
		t.Errorf("SSHConfig = %+v", c.SSHConfig)
	}
	// An encrypted key without its passphrase is accepted: the CLI asks for it.
	conn2 := writeFile(t, "conn2.yml", validSSH)
	if _, ps := loadProblems(t, LoadOptions{ConnectionConfigPaths: []string{conn2}, LookupEnv: envMap(map[string]string{"KEY": key})}); ps != nil {
		t.Errorf("encrypted key without passphrase: %v", ps)
	}
}

func TestLoadErrorIsProblems(t *testing.T) {
	cfg := writeFile(t, "config.yml", "kind: X\n")
	_, err := Load(context.Background(), LoadOptions{ConfigPaths: []string{cfg}})
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 1 {
		t.Fatalf("err = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Load(ctx, LoadOptions{ConfigPaths: []string{cfg}}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}

func TestProblemError(t *testing.T) {
	for _, tc := range []struct {
		p    Problem
		want string
	}{
		{Problem{File: "config.yml", Document: 2, Kind: "ClusterConfiguration", Line: 7, Path: "podSubnetCIDR", Message: `"10.111.0.0/16" overlaps serviceSubnetCIDR "10.111.0.0/24"`, Hint: "choose non-overlapping ranges"},
			`config.yml: document 2 (ClusterConfiguration), line 7: podSubnetCIDR: "10.111.0.0/16" overlaps serviceSubnetCIDR "10.111.0.0/24"; choose non-overlapping ranges`},
		{Problem{Message: "no ClusterConfiguration"}, "no ClusterConfiguration"},
		{Problem{File: "a.yml", Line: 3, Message: "m"}, "a.yml: line 3: m"},
		{Problem{Kind: "ClusterConfiguration", Message: "m", Hint: "h"}, "ClusterConfiguration: m; h"},
	} {
		if got := tc.p.Error(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
	if got := (Problems{{Message: "a"}, {Message: "b"}}).Error(); got != "a\nb" {
		t.Errorf("Problems.Error() = %q", got)
	}
}

func TestDidYouMean(t *testing.T) {
	cands := []string{"sshUser", "sshPort", "sshAgentPrivateKeys", "sudoPassword"}
	for in, want := range map[string]string{
		"sshuser": `did you mean "sshUser"?`, "sshPrt": `did you mean "sshPort"?`, "sudoPasword": `did you mean "sudoPassword"?`,
		"zzz": "remove it or use one of: sshAgentPrivateKeys, sshPort, sshUser, sudoPassword",
	} {
		if got := didYouMean(in, cands); got != want {
			t.Errorf("didYouMean(%q) = %q, want %q", in, got, want)
		}
	}
	if d := levenshtein("kitten", "sitting"); d != 3 {
		t.Errorf("levenshtein = %d", d)
	}
}

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

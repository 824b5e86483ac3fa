package config

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/dhctl-dev/dhctl/candi"
)

func TestBuiltInVersionMap(t *testing.T) {
	vm, err := LoadVersionMap(candi.FS)
	if err != nil {
		t.Fatal(err)
	}
	if vm.Default() != "1.33" {
		t.Errorf("default = %q", vm.Default())
	}
	rel, ok := vm.Release("1.33")
	if !ok || rel.Patch != "1.33.13" || rel.Images["kube-apiserver"].Tag != "v1.33.13" || rel.Images["etcd"].Tag != "3.5.24-0" {
		t.Errorf("1.33 = %+v", rel)
	}
	// The Kubernetes binaries are those of the pinned patch, fetched from dl.k8s.io.
	for _, name := range []string{"kubelet", "kubeadm", "kubectl"} {
		p, ok := rel.Packages[name]
		want := "https://dl.k8s.io/release/v" + rel.Patch + "/bin/linux/amd64/" + name
		if !ok || p.Version != "v"+rel.Patch || p.URL != want {
			t.Errorf("1.33 package %s = %+v, want version v%s from %s", name, p, rel.Patch, want)
		}
	}
	// No sums are invented: a package either has a real sha256 or is not listed yet.
	for minor, r := range vm.Kubernetes {
		for name, p := range r.Packages {
			for _, f := range p.FileList() {
				if len(f.SHA256) != 64 || f.URL == "" {
					t.Errorf("%s package %s file %s has no verified sha256 or no upstream URL", minor, name, f.Name)
				}
			}
		}
	}
}

func TestVersionMapShape(t *testing.T) {
	vm, err := ParseVersionMap([]byte(`
default: "1.33"
kubernetes:
  "1.34": {patch: "1.34.4"}
  "1.9": {patch: "1.9.1"}
  "1.33": {patch: "1.33.13"}
  "1.32": {patch: "1.32.9"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := vm.Supported(), []string{"1.9", "1.32", "1.33", "1.34"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Supported() = %v, want %v", got, want)
	}
	for text, want := range map[string]string{
		"default: \"1.35\"\nkubernetes:\n  \"1.33\": {patch: \"1.33.1\"}\n":                                     `default "1.35" is not one of the versions listed`,
		"default: \"1.33\"\nkubernetes:\n  \"1.33\": {patch: \"1.34.1\"}\n":                                     `patch "1.34.1" is not a release of 1.33`,
		"default: \"v1\"\nkubernetes:\n  \"v1\": {patch: \"v1.1\"}\n":                                           `"v1" is not a Kubernetes minor`,
		"default: \"1.33\"\nkubernetes:\n  \"1.33\": {patch: \"1.33.1\", pakages: {}}\n":                        "field pakages not found",
		"default: \"1.33\"\nkubernetes: {}\n":                                                                   "no Kubernetes versions",
		"default: \"1.33\"\nkubernetes:\n  \"1.33\": {patch: \"1.33.1\", packages: {kubelet: {sha256: abc}}}\n": "is not a sha256",
	} {
		if _, err := ParseVersionMap([]byte(text)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseVersionMap(%q) = %v, want %q", text, err, want)
		}
	}
}

func TestVersionMapDrivesSupportedVersions(t *testing.T) {
	vm, err := ParseVersionMap([]byte("default: \"1.34\"\nkubernetes:\n  \"1.33\": {patch: \"1.33.13\"}\n  \"1.34\": {patch: \"1.34.4\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	auto := writeFile(t, "auto.yml", validCC)
	c, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{auto}, VersionMap: vm})
	if ps != nil || c.KubernetesVersion != "1.34" {
		t.Fatalf("Automatic with default 1.34: %v %v", ps, c)
	}
	old := writeFile(t, "old.yml", validCC+"kubernetesVersion: \"1.32\"\n")
	_, ps = loadProblems(t, LoadOptions{ConfigPaths: []string{old}, VersionMap: vm})
	if len(ps) != 1 || ps[0].Message != "Kubernetes 1.32 is not supported by this dhctl" || ps[0].Hint != "use one of: 1.33, 1.34, or Automatic (= 1.34)" {
		t.Errorf("problems = %v", ps)
	}
}

func TestRegistry(t *testing.T) {
	reg, err := NewRegistry(candi.FS)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ClusterConfiguration", "InitConfiguration", "ModuleConfig", "NodeGroup", "SSHConfig", "SSHHost", "StaticClusterConfiguration", "VsphereClusterConfiguration"}
	if got := reg.Kinds(); !reflect.DeepEqual(got, want) {
		t.Errorf("Kinds() = %v", got)
	}
	if got := reg.APIVersions("SSHConfig"); !reflect.DeepEqual(got, []string{"dhctl.deckhouse.io/v1alpha1"}) {
		t.Errorf("APIVersions(SSHConfig) = %v", got)
	}
	// The built-in schemas and the checked-out ones are the same files.
	disk, err := NewRegistry(os.DirFS("../../candi"))
	if err != nil || !reflect.DeepEqual(disk.Kinds(), want) {
		t.Errorf("registry from disk: %v %v", err, disk.Kinds())
	}
	for _, bad := range []struct{ kind, apiVersion, schema, want string }{
		{"", "v1", "type: object", "needs both a kind and an apiVersion"},
		{"X", "v1", "type: [object", "schema of v1 X"},
		{"Y", "v1", "type: objekt", "is not a valid OpenAPI v3 schema"},
	} {
		if err := reg.Add(bad.kind, bad.apiVersion, []byte(bad.schema)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Add(%q) = %v, want %q", bad.schema, err, bad.want)
		}
	}
}

// TestSchemasRejectUnknownFields: every object schema with properties closes itself, so a typo
// anywhere is an error rather than silently ignored.
func TestSchemasRejectUnknownFields(t *testing.T) {
	reg, err := NewRegistry(candi.FS)
	if err != nil {
		t.Fatal(err)
	}
	for key, s := range reg.schemas {
		checkClosed(t, key.kind, s)
	}
}

func checkClosed(t *testing.T, path string, s *openapi3.Schema) {
	t.Helper()
	if len(s.Properties) > 0 {
		if s.AdditionalProperties.Has == nil || *s.AdditionalProperties.Has {
			t.Errorf("%s: object schema does not set additionalProperties: false", path)
		}
	}
	for name, p := range s.Properties {
		if p.Value != nil {
			checkClosed(t, path+"."+name, p.Value)
		}
	}
	if s.Items != nil && s.Items.Value != nil {
		checkClosed(t, path+"[]", s.Items.Value)
	}
}

func TestAddSchemaFile(t *testing.T) {
	reg, err := NewRegistry(nil)
	if err != nil {
		t.Fatal(err)
	}
	file := []byte(`kind: YandexClusterConfiguration
apiVersions:
- apiVersion: deckhouse.io/v1
  openAPISpec:
    type: object
    additionalProperties: false
    properties:
      apiVersion: {type: string}
      kind: {type: string}
`)
	if err := reg.AddSchemaFile(file); err != nil {
		t.Fatal(err)
	}
	if got := reg.APIVersions("YandexClusterConfiguration"); !reflect.DeepEqual(got, []string{"deckhouse.io/v1"}) {
		t.Errorf("APIVersions = %v", got)
	}
	if err := reg.AddSchemaFile([]byte("kind: X\n")); err == nil {
		t.Error("a schema file without apiVersions must be refused")
	}
}

func TestVersionMapOverride(t *testing.T) {
	vm, err := LoadVersionMap(candi.FS)
	if err != nil {
		t.Fatal(err)
	}
	o, err := ParseVersionMapOverride([]byte(`
kubernetes:
  "1.33":
    images:
      pause: {repository: r/pause, tag: "3.10", digest: ""}
    packages:
      kubelet:
        version: v1.33.13
        files: [{name: kubelet, sha256: 0000000000000000000000000000000000000000000000000000000000000000}]
`))
	if err != nil {
		t.Fatal(err)
	}
	got := vm.WithOverride(o)
	rel, _ := got.Release("1.33")
	if rel.Patch != "1.33.13" || rel.Images["pause"].Repository != "r/pause" || rel.Images["etcd"].Tag != "3.5.24-0" {
		t.Errorf("override did not merge images: %+v", rel)
	}
	if fl := rel.Packages["kubelet"].FileList(); len(fl) != 1 || fl[0].Name != "kubelet" || fl[0].SHA256 != strings.Repeat("0", 64) {
		t.Errorf("kubelet not replaced by the override: %+v", fl)
	}
	if _, ok := rel.Packages["runc"]; !ok {
		t.Errorf("runc lost by the override")
	}
	orig, _ := vm.Release("1.33")
	if fl := orig.Packages["kubelet"].FileList(); len(fl) != 1 || fl[0].SHA256 == strings.Repeat("0", 64) || orig.Images["pause"].Repository == "r/pause" {
		t.Errorf("WithOverride changed the original map: kubelet %+v, pause %+v", fl, orig.Images["pause"])
	}
	for text, want := range map[string]string{
		"kubernetes:\n  \"1.33\": {patch: \"1.34.1\"}\n":                                               "is not a release of 1.33",
		"kubernetes:\n  \"1.33\": {packages: {x: {version: v, files: [{name: a/b, sha256: \"\"}]}}}\n": "must be a plain file name",
		"kubernetes:\n  \"1.33\": {packages: {x: {version: v, url: u, files: [{name: a}]}}}\n":         "has both files and url",
	} {
		if _, err := ParseVersionMapOverride([]byte(text)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseVersionMapOverride(%q) = %v, want %q", text, err, want)
		}
	}
}

package config

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// VersionMap is candi/version_map.yml: per Kubernetes minor, the exact release and every artifact
// a node needs.
type VersionMap struct {
	DefaultMinor string                       `yaml:"default"`
	Kubernetes   map[string]KubernetesRelease `yaml:"kubernetes"`
	// TerraformProviders are the provider plugins cloud layouts use, by source
	// ("hashicorp/vsphere"): what `dhctl mirror pull` carries for an air-gapped operator.
	TerraformProviders map[string]TerraformProvider `yaml:"terraformProviders,omitempty"`
	// Installer is where dhctl's installer image is published, tagged with dhctl's version.
	Installer *InstallerImage `yaml:"installer,omitempty"`
}

// InstallerImage is the repository of dhctl's installer image.
type InstallerImage struct {
	Repository string `yaml:"repository"`
}

// TerraformProvider is one provider plugin release for linux/amd64: the zip file upstream
// publishes (the "packed" form an engine's filesystem mirror reads) and its sha256.
type TerraformProvider struct {
	Version string `yaml:"version"`
	URL     string `yaml:"url,omitempty"`
	SHA256  string `yaml:"sha256"`
}

// TerraformProviderTarget is the platform of the provider plugins dhctl carries.
const TerraformProviderTarget = "linux_amd64"

// PackedName is the file name an engine's filesystem mirror wants for the provider of source
// ("hashicorp/vsphere"): terraform-provider-vsphere_2.1.1_linux_amd64.zip.
func (p TerraformProvider) PackedName(source string) string {
	return "terraform-provider-" + path.Base(source) + "_" + strings.TrimPrefix(p.Version, "v") + "_" + TerraformProviderTarget + ".zip"
}

func checkTerraformProviders(what string, ps map[string]TerraformProvider) error {
	for src, p := range ps {
		ns, typ, ok := strings.Cut(src, "/")
		if !ok || ns == "" || typ == "" || strings.Contains(typ, "/") {
			return fmt.Errorf("%s: terraformProviders key %q is not a provider source like hashicorp/vsphere", what, src)
		}
		if p.Version == "" {
			return fmt.Errorf("%s: terraformProviders.%s has no version", what, src)
		}
		if !isSHA256(p.SHA256) {
			return fmt.Errorf("%s: terraformProviders.%s.sha256 is not a sha256: a provider is never carried unverified", what, src)
		}
	}
	return nil
}

// KubernetesRelease is what one Kubernetes minor installs.
type KubernetesRelease struct {
	Patch    string             `yaml:"patch"` // full release, e.g. "1.33.13"
	Images   map[string]Image   `yaml:"images"`
	Packages map[string]Package `yaml:"packages"` // may be empty until the artifacts issue fills it
}

// Image is a container image; Digest is empty until verified.
type Image struct {
	Repository string `yaml:"repository"`
	Tag        string `yaml:"tag"`
	Digest     string `yaml:"digest"`
}

// Package is a node artifact: one file (URL + SHA256, saved as File or the URL's base name) or
// a list of Files, installed under Dest.
type Package struct {
	Version string        `yaml:"version"`
	URL     string        `yaml:"url,omitempty"`
	SHA256  string        `yaml:"sha256,omitempty"`
	File    string        `yaml:"file,omitempty"`
	Dest    string        `yaml:"dest,omitempty"`
	Files   []PackageFile `yaml:"files,omitempty"`
}

// PackageFile is one file of a package. URL may be empty when the file only exists in a registry.
type PackageFile struct {
	Name   string `yaml:"name"`
	URL    string `yaml:"url,omitempty"`
	SHA256 string `yaml:"sha256"`
}

// FileList returns the package's files: Files, or the single URL/SHA256 file.
func (p Package) FileList() []PackageFile {
	if len(p.Files) > 0 {
		return append([]PackageFile(nil), p.Files...)
	}
	name := p.File
	if name == "" && p.URL != "" {
		name = path.Base(p.URL)
	}
	return []PackageFile{{Name: name, URL: p.URL, SHA256: p.SHA256}}
}

// LoadVersionMap reads version_map.yml from the root of fsys (e.g. candi.FS) and checks that it is
// consistent: a default that exists, minors like "1.33" and patches of their minor.
func LoadVersionMap(fsys fs.FS) (*VersionMap, error) {
	data, err := fs.ReadFile(fsys, "version_map.yml")
	if err != nil {
		return nil, fmt.Errorf("reading version map: %w", err)
	}
	return ParseVersionMap(data)
}

// ParseVersionMap parses and checks the text of a version map.
func ParseVersionMap(data []byte) (*VersionMap, error) {
	var vm VersionMap
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&vm); err != nil {
		return nil, fmt.Errorf("version map: %w", err)
	}
	if len(vm.Kubernetes) == 0 {
		return nil, fmt.Errorf("version map: no Kubernetes versions under the kubernetes key")
	}
	for minor, rel := range vm.Kubernetes {
		if _, _, ok := parseMinor(minor); !ok {
			return nil, fmt.Errorf("version map: %q is not a Kubernetes minor like \"1.33\"", minor)
		}
		if !strings.HasPrefix(rel.Patch, minor+".") {
			return nil, fmt.Errorf("version map: kubernetes.%q.patch %q is not a release of %s", minor, rel.Patch, minor)
		}
		if err := checkPackages(minor, rel.Packages); err != nil {
			return nil, err
		}
	}
	if _, ok := vm.Kubernetes[vm.DefaultMinor]; !ok {
		return nil, fmt.Errorf("version map: default %q is not one of the versions listed", vm.DefaultMinor)
	}
	if err := checkTerraformProviders("version map", vm.TerraformProviders); err != nil {
		return nil, err
	}
	return &vm, nil
}

func checkPackages(minor string, pkgs map[string]Package) error {
	for name, p := range pkgs {
		if p.SHA256 != "" && !isSHA256(p.SHA256) {
			return fmt.Errorf("version map: kubernetes.%q.packages.%s.sha256 is not a sha256", minor, name)
		}
		if len(p.Files) > 0 && (p.URL != "" || p.SHA256 != "" || p.File != "") {
			return fmt.Errorf("version map: kubernetes.%q.packages.%s has both files and url/sha256/file: use one", minor, name)
		}
		for i, f := range p.FileList() {
			if f.Name == "" || strings.ContainsAny(f.Name, "/\\") || f.Name == "." || f.Name == ".." {
				return fmt.Errorf("version map: kubernetes.%q.packages.%s file %d: name %q must be a plain file name", minor, name, i+1, f.Name)
			}
			if f.SHA256 != "" && !isSHA256(f.SHA256) {
				return fmt.Errorf("version map: kubernetes.%q.packages.%s file %s: sha256 %q is not a sha256", minor, name, f.Name, f.SHA256)
			}
		}
	}
	return nil
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ParseVersionMapOverride parses a partial version map (a test rig's or an operator's own
// artifacts): minors present replace the patch when set, and the images and packages they list,
// one whole entry per name. It needs no default.
func ParseVersionMapOverride(data []byte) (*VersionMap, error) {
	var vm VersionMap
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&vm); err != nil {
		return nil, fmt.Errorf("version map override: %w", err)
	}
	if len(vm.Kubernetes) == 0 && len(vm.TerraformProviders) == 0 {
		return nil, fmt.Errorf("version map override: no Kubernetes versions under the kubernetes key and no terraformProviders")
	}
	if err := checkTerraformProviders("version map override", vm.TerraformProviders); err != nil {
		return nil, err
	}
	for minor, rel := range vm.Kubernetes {
		if _, _, ok := parseMinor(minor); !ok {
			return nil, fmt.Errorf("version map override: %q is not a Kubernetes minor like \"1.33\"", minor)
		}
		if rel.Patch != "" && !strings.HasPrefix(rel.Patch, minor+".") {
			return nil, fmt.Errorf("version map override: kubernetes.%q.patch %q is not a release of %s", minor, rel.Patch, minor)
		}
		if err := checkPackages(minor, rel.Packages); err != nil {
			return nil, err
		}
	}
	return &vm, nil
}

// WithOverride returns a copy of vm with o applied (see ParseVersionMapOverride). A minor only
// in o is added when it has a patch.
func (vm *VersionMap) WithOverride(o *VersionMap) *VersionMap {
	out := &VersionMap{DefaultMinor: vm.DefaultMinor, Kubernetes: map[string]KubernetesRelease{}, TerraformProviders: map[string]TerraformProvider{}}
	if o.DefaultMinor != "" {
		out.DefaultMinor = o.DefaultMinor
	}
	for src, p := range vm.TerraformProviders {
		out.TerraformProviders[src] = p
	}
	for src, p := range o.TerraformProviders {
		out.TerraformProviders[src] = p
	}
	out.Installer = vm.Installer
	if o.Installer != nil {
		out.Installer = o.Installer
	}
	for m, r := range vm.Kubernetes {
		out.Kubernetes[m] = copyRelease(r)
	}
	for m, or := range o.Kubernetes {
		r, ok := out.Kubernetes[m]
		if !ok && or.Patch == "" {
			continue
		}
		if !ok {
			r = KubernetesRelease{Images: map[string]Image{}, Packages: map[string]Package{}}
		}
		if or.Patch != "" {
			r.Patch = or.Patch
		}
		for n, img := range or.Images {
			r.Images[n] = img
		}
		for n, p := range or.Packages {
			r.Packages[n] = p
		}
		out.Kubernetes[m] = r
	}
	return out
}

func copyRelease(r KubernetesRelease) KubernetesRelease {
	c := KubernetesRelease{Patch: r.Patch, Images: map[string]Image{}, Packages: map[string]Package{}}
	for n, i := range r.Images {
		c.Images[n] = i
	}
	for n, p := range r.Packages {
		p.Files = append([]PackageFile(nil), p.Files...)
		c.Packages[n] = p
	}
	return c
}

// Supported lists the supported minors in ascending version order.
func (vm *VersionMap) Supported() []string {
	out := make([]string, 0, len(vm.Kubernetes))
	for m := range vm.Kubernetes {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		ai, aj, _ := parseMinor(out[i])
		bi, bj, _ := parseMinor(out[j])
		if ai != bi {
			return ai < bi
		}
		return aj < bj
	})
	return out
}

// Default is the minor that kubernetesVersion: Automatic resolves to.
func (vm *VersionMap) Default() string { return vm.DefaultMinor }

// Release returns what a minor installs.
func (vm *VersionMap) Release(minor string) (KubernetesRelease, bool) {
	r, ok := vm.Kubernetes[minor]
	return r, ok
}

func parseMinor(s string) (major, minor int, ok bool) {
	a, b, found := strings.Cut(s, ".")
	if !found {
		return 0, 0, false
	}
	x, err1 := strconv.Atoi(a)
	y, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || x < 0 || y < 0 {
		return 0, 0, false
	}
	return x, y, true
}

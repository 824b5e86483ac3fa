package config

import (
	"fmt"
	"io/fs"
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

// Package is a node artifact with its upstream URL and sha256.
type Package struct {
	Version string `yaml:"version"`
	URL     string `yaml:"url"`
	SHA256  string `yaml:"sha256"`
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
		for name, p := range rel.Packages {
			if p.SHA256 != "" && len(p.SHA256) != 64 {
				return nil, fmt.Errorf("version map: kubernetes.%q.packages.%s.sha256 is not a sha256", minor, name)
			}
		}
	}
	if _, ok := vm.Kubernetes[vm.DefaultMinor]; !ok {
		return nil, fmt.Errorf("version map: default %q is not one of the versions listed", vm.DefaultMinor)
	}
	return &vm, nil
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

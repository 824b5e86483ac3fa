// Package mirror copies everything a cluster needs (its images and node packages, in the layout
// of docs/registry-layout.md) from upstream or from another registry into a bundle (`mirror
// pull`), and from a bundle into a private registry (`mirror push`), so a cluster can be
// installed with no internet.
//
// A bundle is a directory: one tar per archive (platform.tar for images, packages.tar for node
// packages), each an OCI image layout whose blobs are stored once however many items share them,
// optionally split into chunks, and dhctl-bundle.json listing every item with its digest and
// every file with its sha256.
package mirror

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/dhctl-dev/dhctl/internal/config"
)

// Kind says whether an item is a container image or a node package.
type Kind string

const (
	KindImage   Kind = "image"
	KindPackage Kind = "package"
	// KindTerraformProvider is a provider plugin's zip, stored as a package (so a registry holds
	// it too) and laid out beside the archives as an engine's filesystem mirror.
	KindTerraformProvider Kind = "terraform-provider"
)

// The archives of a bundle: images in one, node packages in the other.
const (
	ArchivePlatform = "platform"
	ArchivePackages = "packages"
)

// Item is one image or node package a cluster needs.
type Item struct {
	Kind Kind   `json:"kind"`
	Name string `json:"name"`
	// Path is where the item lives below a repository: "kube-apiserver:v1.33.13",
	// "packages/kubelet:v1.33.13".
	Path    string `json:"path"`
	Archive string `json:"archive"`
	// Version is a package's version exactly (its tag cannot hold every character).
	Version string `json:"version,omitempty"`
	// Upstream is where an image comes from without --source (the version map's repository:tag).
	Upstream string `json:"upstream,omitempty"`
	// Pin is the version map's digest of an upstream image, when it has one.
	Pin string `json:"pin,omitempty"`
	// Source is a Terraform provider's source, e.g. hashicorp/vsphere.
	Source string `json:"source,omitempty"`
	// Files are a package's files with their upstream URLs and sha256 sums.
	Files []config.PackageFile `json:"files,omitempty"`
	// Digest and Size (manifest, config and layers) are known once the item is pulled.
	Digest string `json:"digest,omitempty"`
	Size   int64  `json:"size,omitempty"`
}

// Ref is the item's reference below repo (host[:port]/path).
func (it Item) Ref(repo string) string { return strings.TrimSuffix(repo, "/") + "/" + it.Path }

// tagUnsafe matches what an OCI tag cannot hold.
var tagUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// PackageTag turns a package version into a tag: characters a tag cannot hold ('~', '+', ':')
// become '_' (docs/registry-layout.md).
func PackageTag(version string) string {
	t := tagUnsafe.ReplaceAllString(version, "_")
	if len(t) > 128 {
		t = t[:128]
	}
	return t
}

// PackagePath is where the layout puts node package name at version, below the repository.
func PackagePath(name, version string) string {
	return "packages/" + name + ":" + PackageTag(version)
}

// Plan lists what clusters of the given Kubernetes minors need, from the version map: every
// image (control plane, etcd, CoreDNS, pause, kube-proxy, CNI, dhctl's platform controller),
// every node package, and the provider plugins of the given sources (a cloud provider's, e.g.
// hashicorp/vsphere), each once, sorted by archive and path.
func Plan(vm *config.VersionMap, minors []string, providers ...string) ([]Item, error) {
	if len(minors) == 0 {
		return nil, fmt.Errorf("mirror: no Kubernetes version to mirror")
	}
	byPath := map[string]Item{}
	add := func(minor string, it Item) error {
		if prev, ok := byPath[it.Path]; ok {
			if fmt.Sprint(prev.Files, prev.Upstream, prev.Pin, prev.Version) != fmt.Sprint(it.Files, it.Upstream, it.Pin, it.Version) {
				return fmt.Errorf("mirror: version map: %s of Kubernetes %s differs from the %s another version lists under the same name and tag; give the two different tags", it.Path, minor, it.Path)
			}
			return nil
		}
		byPath[it.Path] = it
		return nil
	}
	for _, minor := range minors {
		rel, ok := vm.Release(minor)
		if !ok {
			return nil, fmt.Errorf("mirror: Kubernetes %s is not supported by this dhctl; supported: %s", minor, strings.Join(vm.Supported(), ", "))
		}
		for name, img := range rel.Images {
			if img.Tag == "" {
				return nil, fmt.Errorf("mirror: version map: kubernetes.%q.images.%s has no tag", minor, name)
			}
			it := Item{Kind: KindImage, Name: name, Path: name + ":" + img.Tag, Archive: ArchivePlatform, Pin: img.Digest}
			if img.Repository != "" {
				it.Upstream = img.Repository + ":" + img.Tag
			}
			if err := add(minor, it); err != nil {
				return nil, err
			}
		}
		for name, p := range rel.Packages {
			if p.Version == "" {
				return nil, fmt.Errorf("mirror: version map: kubernetes.%q.packages.%s has no version", minor, name)
			}
			it := Item{Kind: KindPackage, Name: name, Path: PackagePath(name, p.Version), Archive: ArchivePackages, Version: p.Version, Files: p.FileList()}
			for _, f := range it.Files {
				if f.SHA256 == "" {
					return nil, fmt.Errorf("mirror: version map: kubernetes.%q.packages.%s file %s has no sha256: a mirror never carries an unverified file", minor, name, f.Name)
				}
			}
			if err := add(minor, it); err != nil {
				return nil, err
			}
		}
	}
	for _, src := range providers {
		p, ok := vm.TerraformProviders[src]
		if !ok {
			var known []string
			for k := range vm.TerraformProviders {
				known = append(known, k)
			}
			sort.Strings(known)
			return nil, fmt.Errorf("mirror: the version map has no Terraform provider %s (it has: %s)", src, strings.Join(known, ", "))
		}
		name := "terraform-provider-" + path.Base(src)
		it := Item{Kind: KindTerraformProvider, Name: name, Path: PackagePath(name, p.Version), Archive: ArchivePackages, Version: p.Version, Source: src,
			Files: []config.PackageFile{{Name: p.PackedName(src), URL: p.URL, SHA256: p.SHA256}}}
		if err := add("any", it); err != nil {
			return nil, err
		}
	}
	out := make([]Item, 0, len(byPath))
	for _, it := range byPath {
		out = append(out, it)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Archive != out[j].Archive {
			return out[i].Archive < out[j].Archive
		}
		return out[i].Path < out[j].Path
	})
	return out, nil
}

// InstallerItem is dhctl's installer image at version (its tag), from the version map's
// repository; ok is false for a build without a release version or a map without the entry.
func InstallerItem(vm *config.VersionMap, version string) (Item, bool) {
	if vm.Installer == nil || vm.Installer.Repository == "" || version == "" || version == "devel" || strings.HasSuffix(version, "-dirty") {
		return Item{}, false
	}
	tag := PackageTag(version)
	return Item{Kind: KindImage, Name: "installer", Path: "installer:" + tag, Archive: ArchivePlatform,
		Upstream: vm.Installer.Repository + ":" + tag}, true
}

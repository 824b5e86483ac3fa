package images

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types of node packages stored as OCI artifacts (see
// docs/registry-layout.md). The config media type is the artifact type.
const (
	PackageConfigMediaType types.MediaType = "application/vnd.dhctl.package.config.v1+json"
	DebMediaType           types.MediaType = "application/vnd.debian.binary-package"
	FileMediaType          types.MediaType = "application/octet-stream"
	// TitleAnnotation names the file a layer holds, as ORAS does.
	TitleAnnotation = "org.opencontainers.image.title"
	// VersionAnnotation holds the package's version exactly, since a tag
	// cannot carry characters such as '~' or '+'.
	VersionAnnotation = "org.opencontainers.image.version"
)

// PackageConfig is the config blob of a package artifact.
type PackageConfig struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Files lists the file names (layer titles) in layer order.
	Files []string `json:"files"`
}

// PackageFile is one file of a package: a Debian package or a binary.
type PackageFile struct {
	// Name is the file name the node gets (e.g. kubelet, runc_1.1.5+ds1-1+deb12u1_amd64.deb).
	Name string
	// Source is the host file.
	Source string
}

// Package builds the OCI artifact of a node package: one layer per file,
// each titled with its file name; .deb files get the Debian media type.
func Package(pkgName, version string, files []PackageFile) (v1.Image, error) {
	cfg := PackageConfig{Name: pkgName, Version: version}
	var adds []mutate.Addendum
	for _, f := range files {
		if strings.ContainsAny(f.Name, "/\\") || f.Name == "" || f.Name == "." || f.Name == ".." {
			return nil, fmt.Errorf("images: package %s: file name %q must be a plain name", pkgName, f.Name)
		}
		data, err := os.ReadFile(f.Source)
		if err != nil {
			return nil, fmt.Errorf("images: package %s: %w", pkgName, err)
		}
		mt := FileMediaType
		if strings.HasSuffix(f.Name, ".deb") {
			mt = DebMediaType
		}
		adds = append(adds, mutate.Addendum{
			Layer:       static.NewLayer(data, mt),
			Annotations: map[string]string{TitleAnnotation: f.Name},
			MediaType:   mt,
		})
		cfg.Files = append(cfg.Files, f.Name)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img, err = mutate.Append(img, adds...)
	if err != nil {
		return nil, err
	}
	return &rawConfigImage{Image: img, config: raw, annotations: map[string]string{VersionAnnotation: version}}, nil
}

// tagUnsafe matches what an OCI tag cannot hold.
var tagUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// PackageTag turns a package version into a tag: characters a tag cannot
// hold ('~', '+', ':') become '_'.
func PackageTag(version string) string {
	t := tagUnsafe.ReplaceAllString(version, "_")
	if len(t) > 128 {
		t = t[:128]
	}
	return t
}

// FetchPackage downloads the files of the package artifact at ref into dir
// and returns their paths in layer order. Each layer's digest is verified
// while it is read.
func FetchPackage(ctx context.Context, ref string, dst Registry, dir string) ([]string, error) {
	r, err := name.ParseReference(ref, name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("images: package reference %q: %w", ref, err)
	}
	img, err := remote.Image(r, dst.options(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("images: fetching package %s: %w", ref, err)
	}
	mf, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	if mf.Config.MediaType != PackageConfigMediaType {
		return nil, fmt.Errorf("images: %s is not a dhctl package (config media type %q, want %q)", ref, mf.Config.MediaType, PackageConfigMediaType)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, desc := range mf.Layers {
		title := desc.Annotations[TitleAnnotation]
		if title == "" || strings.ContainsAny(title, "/\\") || title == "." || title == ".." {
			return nil, fmt.Errorf("images: package %s: layer %s has no usable %s annotation", ref, desc.Digest, TitleAnnotation)
		}
		layer, err := img.LayerByDigest(desc.Digest)
		if err != nil {
			return nil, err
		}
		rc, err := layer.Compressed() // verifies the digest at EOF
		if err != nil {
			return nil, fmt.Errorf("images: package %s: reading %s: %w", ref, title, err)
		}
		p := filepath.Join(dir, title)
		err = writeFile(p, rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("images: package %s: writing %s: %w", ref, title, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

func writeFile(p string, r io.Reader) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// rawConfigImage replaces the config blob of an image, for artifacts whose
// config is not an image config.
type rawConfigImage struct {
	v1.Image
	config      []byte
	annotations map[string]string
}

func (i *rawConfigImage) RawConfigFile() ([]byte, error) { return i.config, nil }

func (i *rawConfigImage) ConfigName() (v1.Hash, error) {
	h, _, err := v1.SHA256(strings.NewReader(string(i.config)))
	return h, err
}

func (i *rawConfigImage) ConfigFile() (*v1.ConfigFile, error) {
	return nil, fmt.Errorf("images: a package artifact has no image config")
}

func (i *rawConfigImage) Manifest() (*v1.Manifest, error) {
	mf, err := i.Image.Manifest()
	if err != nil {
		return nil, err
	}
	mf = mf.DeepCopy()
	h, err := i.ConfigName()
	if err != nil {
		return nil, err
	}
	mf.Config = v1.Descriptor{MediaType: PackageConfigMediaType, Size: int64(len(i.config)), Digest: h}
	mf.Annotations = i.annotations
	return mf, nil
}

func (i *rawConfigImage) RawManifest() ([]byte, error) {
	mf, err := i.Manifest()
	if err != nil {
		return nil, err
	}
	return json.Marshal(mf)
}

func (i *rawConfigImage) Digest() (v1.Hash, error) {
	raw, err := i.RawManifest()
	if err != nil {
		return v1.Hash{}, err
	}
	h, _, err := v1.SHA256(strings.NewReader(string(raw)))
	return h, err
}

func (i *rawConfigImage) Size() (int64, error) {
	raw, err := i.RawManifest()
	return int64(len(raw)), err
}

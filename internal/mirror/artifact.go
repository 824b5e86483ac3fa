package mirror

import (
	"encoding/json"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types and annotations of node packages stored as OCI artifacts
// (docs/registry-layout.md). The config media type is the artifact type.
const (
	PackageConfigMediaType types.MediaType = "application/vnd.dhctl.package.config.v1+json"
	DebMediaType           types.MediaType = "application/vnd.debian.binary-package"
	FileMediaType          types.MediaType = "application/octet-stream"
	// TitleAnnotation names the file a layer holds, as ORAS does.
	TitleAnnotation = "org.opencontainers.image.title"
	// VersionAnnotation holds a package's version exactly.
	VersionAnnotation = "org.opencontainers.image.version"
	// refNameAnnotation names a manifest in an OCI layout's index.
	refNameAnnotation = "org.opencontainers.image.ref.name"
)

// PackageConfig is the config blob of a package artifact.
type PackageConfig struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Files lists the file names (layer titles) in layer order.
	Files []string `json:"files"`
}

// PackageLayer is one file of a package artifact, already stored as a blob.
type PackageLayer struct {
	Name string
	Hash v1.Hash
	Size int64
}

// PackageManifest builds the manifest and config of a package artifact: one layer per file, each
// titled with its file name (a plain name); .deb files get Debian's media type.
func PackageManifest(name, version string, files []PackageLayer) (manifest, cfg []byte, err error) {
	pc := PackageConfig{Name: name, Version: version}
	mf := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Annotations: map[string]string{VersionAnnotation: version}}
	for _, f := range files {
		if !plainName(f.Name) {
			return nil, nil, fmt.Errorf("mirror: package %s: file name %q must be a plain name", name, f.Name)
		}
		mt := FileMediaType
		if strings.HasSuffix(f.Name, ".deb") {
			mt = DebMediaType
		}
		mf.Layers = append(mf.Layers, v1.Descriptor{MediaType: mt, Size: f.Size, Digest: f.Hash, Annotations: map[string]string{TitleAnnotation: f.Name}})
		pc.Files = append(pc.Files, f.Name)
	}
	if cfg, err = json.Marshal(pc); err != nil {
		return nil, nil, err
	}
	h, n, err := v1.SHA256(strings.NewReader(string(cfg)))
	if err != nil {
		return nil, nil, err
	}
	mf.Config = v1.Descriptor{MediaType: PackageConfigMediaType, Size: n, Digest: h}
	manifest, err = json.Marshal(mf)
	return manifest, cfg, err
}

// checkPackage checks that a package artifact's manifest carries exactly the files, with the
// sums, that the version map gives the item.
func checkPackage(it Item, mf *v1.Manifest) error {
	if mf.Config.MediaType != PackageConfigMediaType {
		return fmt.Errorf("%s is not a dhctl package (config media type %q, want %q)", it.Path, mf.Config.MediaType, PackageConfigMediaType)
	}
	have := map[string]v1.Hash{}
	for _, l := range mf.Layers {
		have[l.Annotations[TitleAnnotation]] = l.Digest
	}
	for _, f := range it.Files {
		h, ok := have[f.Name]
		if !ok {
			return fmt.Errorf("%s has no file %s, which the version map lists", it.Path, f.Name)
		}
		if h.Algorithm != "sha256" || h.Hex != f.SHA256 {
			return fmt.Errorf("%s file %s is %s, but the version map says sha256:%s", it.Path, f.Name, h, f.SHA256)
		}
	}
	if len(have) != len(it.Files) {
		return fmt.Errorf("%s has %d files, the version map lists %d", it.Path, len(have), len(it.Files))
	}
	return nil
}

func plainName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\\")
}

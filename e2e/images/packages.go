package images

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dhctl-dev/dhctl/internal/mirror"
)

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
	if mf.Config.MediaType != mirror.PackageConfigMediaType {
		return nil, fmt.Errorf("images: %s is not a dhctl package (config media type %q, want %q)", ref, mf.Config.MediaType, mirror.PackageConfigMediaType)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, desc := range mf.Layers {
		title := desc.Annotations[mirror.TitleAnnotation]
		if title == "" || strings.ContainsAny(title, "/\\") || title == "." || title == ".." {
			return nil, fmt.Errorf("images: package %s: layer %s has no usable %s annotation", ref, desc.Digest, mirror.TitleAnnotation)
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

package mirror

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/dhctl-dev/dhctl/internal/config"
)

// FuzzOpen feeds Open a bundle manifest and an archive file of any content: it must answer
// with a bundle or an error, never a panic, and reading an item's blobs must end.
func FuzzOpen(f *testing.F) {
	manifest, archive := seedBundle(f)
	f.Add(manifest, archive)
	f.Add(manifest, archive[:len(archive)/2])
	f.Add([]byte(`{"format":"dhctl-bundle/v1","items":[{"path":"x","archive":"packages","digest":"sha256:00"}],"archives":[{"name":"packages","files":[{"name":"packages.tar","size":3}]}]}`), []byte("abc"))
	f.Add([]byte(`{"format":"dhctl-bundle/v1","archives":[{"name":"a","files":[{"name":"../etc/passwd","size":1}]}]}`), []byte("x"))
	f.Fuzz(func(t *testing.T, manifest, archive []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ManifestFile), manifest, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "packages.tar"), archive, 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := Open(dir)
		if err != nil {
			return
		}
		defer b.Close()
		for _, it := range b.Manifest.Items {
			img, err := b.Image(it)
			if err != nil {
				continue
			}
			layers, err := img.Layers()
			if err != nil {
				continue
			}
			for _, l := range layers {
				if rc, err := l.Compressed(); err == nil {
					io.Copy(io.Discard, rc)
					rc.Close()
				}
			}
		}
	})
}

// seedBundle makes a real one-package bundle and returns its manifest and archive.
func seedBundle(f *testing.F) (manifest, archive []byte) {
	dir := f.TempDir()
	content := []byte("#!/bin/sh\necho tool\n")
	sum := sha256.Sum256(content)
	it := Item{Kind: KindPackage, Name: "tool", Version: "1.0", Path: PackagePath("tool", "1.0"), Archive: ArchivePackages,
		Files: []config.PackageFile{{Name: "tool", SHA256: hex.EncodeToString(sum[:])}}}
	w, err := NewWriter(dir)
	if err != nil {
		f.Fatal(err)
	}
	defer w.Close()
	ctx := context.Background()
	if _, err := w.AddPackage(ctx, it, func(context.Context, PackageFileRef) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(content)), nil
	}); err != nil {
		f.Fatal(err)
	}
	if _, err := w.Finish(ctx, []Item{it}, 0); err != nil {
		f.Fatal(err)
	}
	if manifest, err = os.ReadFile(filepath.Join(dir, ManifestFile)); err != nil {
		f.Fatal(err)
	}
	if archive, err = os.ReadFile(filepath.Join(dir, "packages.tar")); err != nil {
		f.Fatal(err)
	}
	return manifest, archive
}

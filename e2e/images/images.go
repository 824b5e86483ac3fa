// Package images packs locally built binaries into OCI images and node
// packages into OCI artifacts, and pushes them to a registry under the layout
// that docs/registry-layout.md describes (the one `dhctl mirror` produces).
package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DefaultPath is the PATH of every image: kubeadm's static pod manifests call
// the binaries by bare name.
const DefaultPath = "/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin"

// File is one file of an image layer.
type File struct {
	// Path inside the image, absolute.
	Path string
	// Mode bits; 0755 if zero.
	Mode int64
	// Source is a host file to copy, or, when Link is set, nothing.
	Source string
	// Data is used when Source is empty.
	Data []byte
	// Link makes Path a symbolic link to Link.
	Link string
}

// Config is what an image runs.
type Config struct {
	Entrypoint []string
	Cmd        []string
	// Env adds to PATH=DefaultPath.
	Env []string
	// User, e.g. "65532" for non-root images.
	User string
}

// epoch is the timestamp of every file and image, so that packing the same
// binaries twice gives the same digests.
var epoch = time.Unix(0, 0).UTC()

// LayerFromFiles writes a reproducible gzip tar of files (with their parent
// directories) into cacheDir, named by the digest of its content, and returns
// it as a layer. A second call with the same files reuses the file.
func LayerFromFiles(cacheDir string, files []File) (v1.Layer, error) {
	var buf bytes.Buffer
	if err := writeTar(&buf, files); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(buf.Bytes())
	out := filepath.Join(cacheDir, "layers", hex.EncodeToString(sum[:])+".tar.gz")
	if _, err := os.Stat(out); err != nil {
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return nil, err
		}
		tmp := out + ".tmp"
		f, err := os.Create(tmp)
		if err != nil {
			return nil, err
		}
		zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
		if _, err := zw.Write(buf.Bytes()); err != nil {
			f.Close()
			return nil, err
		}
		if err := zw.Close(); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		if err := os.Rename(tmp, out); err != nil {
			return nil, err
		}
	}
	return tarball.LayerFromFile(out, tarball.WithMediaType(types.OCILayer))
}

// writeTar writes files as a tar stream, parents first, sorted by path.
func writeTar(w io.Writer, files []File) error {
	tw := tar.NewWriter(w)
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	dirs := map[string]bool{}
	var addDir func(d string) error
	addDir = func(d string) error {
		if d == "/" || d == "." || dirs[d] {
			return nil
		}
		if err := addDir(path.Dir(d)); err != nil {
			return err
		}
		dirs[d] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX})
	}
	for _, f := range sorted {
		if !path.IsAbs(f.Path) {
			return fmt.Errorf("images: file path %q must be absolute", f.Path)
		}
		if err := addDir(path.Dir(f.Path)); err != nil {
			return err
		}
		name := strings.TrimPrefix(f.Path, "/")
		mode := f.Mode
		if mode == 0 {
			mode = 0o755
		}
		if f.Link != "" {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: f.Link, Mode: 0o777, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
				return err
			}
			continue
		}
		data := f.Data
		if f.Source != "" {
			var err error
			if data, err = os.ReadFile(f.Source); err != nil {
				return fmt.Errorf("images: reading %s for %s: %w", f.Source, f.Path, err)
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: mode, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// TreeFiles lists a host directory tree (e.g. Debian packages unpacked with
// dpkg-deb -x) as files under prefix inside the image, keeping symbolic links.
func TreeFiles(root, prefix string) ([]File, error) {
	var files []File
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." || info.IsDir() {
			return err
		}
		dst := path.Join(prefix, filepath.ToSlash(rel))
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			files = append(files, File{Path: dst, Link: target})
		case info.Mode().IsRegular():
			files = append(files, File{Path: dst, Source: p, Mode: int64(info.Mode().Perm())})
		}
		return nil
	})
	return files, err
}

// Image builds a linux/amd64 OCI image from layers (bottom first).
func Image(layers []v1.Layer, cfg Config) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		return nil, fmt.Errorf("images: appending layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = cfg.Entrypoint
	cf.Config.Cmd = cfg.Cmd
	cf.Config.Env = append([]string{"PATH=" + DefaultPath}, cfg.Env...)
	cf.Config.User = cfg.User
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("images: setting config: %w", err)
	}
	return img, nil
}

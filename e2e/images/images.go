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
	"encoding/json"
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
// it as a layer. A second call with the same files (same paths, sizes,
// modification times and modes) reuses the file and its digests without
// reading the sources again.
func LayerFromFiles(cacheDir string, files []File) (v1.Layer, error) {
	key, err := filesKey(files)
	if err != nil {
		return nil, err
	}
	indexPath := filepath.Join(cacheDir, "layers", "index", key+".json")
	if l, err := cachedLayerFrom(indexPath); err == nil {
		return l, nil
	}
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
		tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
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
	l, err := tarball.LayerFromFile(out, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	if err := writeLayerIndex(indexPath, out, l); err != nil {
		return nil, err
	}
	return l, nil
}

// filesKey identifies a set of files by what can change them without
// reading their content: path, mode and link in the image, and for host
// files their path, size and modification time; inline data by its hash.
func filesKey(files []File) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "v1\n")
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	for _, f := range sorted {
		fmt.Fprintf(h, "%s\x00%o\x00%s\x00", f.Path, f.Mode, f.Link)
		switch {
		case f.Source != "":
			st, err := os.Stat(f.Source)
			if err != nil {
				return "", fmt.Errorf("images: %s for %s: %w", f.Source, f.Path, err)
			}
			fmt.Fprintf(h, "%s\x00%d\x00%d\n", f.Source, st.Size(), st.ModTime().UnixNano())
		default:
			d := sha256.Sum256(f.Data)
			fmt.Fprintf(h, "%x\n", d)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// layerIndex records a packed layer's file and digests.
type layerIndex struct {
	File   string `json:"file"`
	Digest string `json:"digest"`
	DiffID string `json:"diffID"`
	Size   int64  `json:"size"`
}

func writeLayerIndex(indexPath, file string, l v1.Layer) error {
	d, err := l.Digest()
	if err != nil {
		return err
	}
	diffID, err := l.DiffID()
	if err != nil {
		return err
	}
	size, err := l.Size()
	if err != nil {
		return err
	}
	raw, err := json.Marshal(layerIndex{File: file, Digest: d.String(), DiffID: diffID.String(), Size: size})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(indexPath), 0o755); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", indexPath, os.Getpid())
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, indexPath)
}

// cachedLayer is a packed layer whose digests are known from the index; a
// registry still verifies the digest of what it receives.
type cachedLayer struct {
	file           string
	digest, diffID v1.Hash
	size           int64
}

func cachedLayerFrom(indexPath string) (*cachedLayer, error) {
	raw, err := os.ReadFile(indexPath)
	if err != nil {
		return nil, err
	}
	var idx layerIndex
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, err
	}
	st, err := os.Stat(idx.File)
	if err != nil || st.Size() != idx.Size {
		return nil, fmt.Errorf("images: cached layer %s is gone or changed", idx.File)
	}
	d, err := v1.NewHash(idx.Digest)
	if err != nil {
		return nil, err
	}
	diffID, err := v1.NewHash(idx.DiffID)
	if err != nil {
		return nil, err
	}
	return &cachedLayer{file: idx.File, digest: d, diffID: diffID, size: idx.Size}, nil
}

func (l *cachedLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *cachedLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *cachedLayer) Size() (int64, error)                { return l.size, nil }
func (l *cachedLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }
func (l *cachedLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.file) }

func (l *cachedLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := os.Open(l.file)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, f}, nil
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

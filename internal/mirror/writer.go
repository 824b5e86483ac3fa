package mirror

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/dhctl-dev/dhctl/internal/atomicfile"
)

// workDir is where a bundle is assembled before it is packed: a blob store named by digest and
// the list of finished items. Every blob is written to a temporary file, verified and renamed, so
// whatever is in the store is whole, and an interrupted pull never fetches it again.
const workDir = ".work"

// doneFile lists the finished items of the work dir.
const doneFile = "done.json"

// workItem is a finished item: its manifest and every blob it needs are in the store.
type workItem struct {
	Item      Item            `json:"item"`
	MediaType types.MediaType `json:"mediaType"`
	Blobs     []string        `json:"blobs"` // manifest, config, layers
}

// Writer assembles a bundle in dir. Items are added (pulled, or built from local files) one by
// one, each recorded once whole; Finish packs them into the archives and writes the manifest.
type Writer struct {
	dir, work string
	lock      *os.File
	mu        sync.Mutex
	done      map[string]workItem
	stats     Stats
}

// Stats counts what a Writer stored: bytes written to new blobs, and blobs it already had.
type Stats struct {
	BlobsWritten int
	BytesWritten int64
	BlobsReused  int
}

// NewWriter opens (or resumes) the assembly of a bundle in dir, which it holds locked until
// Close: two pulls into one directory would mix their items.
func NewWriter(dir string) (*Writer, error) {
	w := &Writer{dir: dir, work: filepath.Join(dir, workDir), done: map[string]workItem{}}
	blobs := filepath.Join(w.work, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, fmt.Errorf("mirror: bundle directory %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(w.work, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("mirror: another pull is writing into %s (%v); wait for it or stop it", dir, err)
	}
	w.lock = lock
	// A pull killed while it wrote a blob leaves its temporary file; the blob is fetched again.
	if partial, err := filepath.Glob(filepath.Join(blobs, ".*.partial-*")); err == nil {
		for _, p := range partial {
			os.Remove(p)
		}
	}
	data, err := os.ReadFile(filepath.Join(w.work, doneFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		w.Close()
		return nil, fmt.Errorf("mirror: %w", err)
	default:
		if err := json.Unmarshal(data, &w.done); err != nil {
			w.Close()
			return nil, fmt.Errorf("mirror: %s is damaged (%v): remove %s and pull again", filepath.Join(w.work, doneFile), err, w.work)
		}
	}
	return w, nil
}

// Close releases the bundle directory.
func (w *Writer) Close() error {
	if w.lock == nil {
		return nil
	}
	err := w.lock.Close()
	w.lock = nil
	return err
}

// Stats returns what the writer stored so far.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// Done returns the finished item at path, if every blob it needs is stored.
func (w *Writer) Done(path string) (Item, bool) {
	w.mu.Lock()
	wi, ok := w.done[path]
	w.mu.Unlock()
	if !ok {
		return Item{}, false
	}
	for _, b := range wi.Blobs {
		h, err := v1.NewHash(b)
		if err != nil || !w.HasBlob(h) {
			return Item{}, false
		}
	}
	return wi.Item, true
}

func (w *Writer) blobPath(h v1.Hash) string {
	return filepath.Join(w.work, "blobs", h.Algorithm, h.Hex)
}

// HasBlob reports whether the store holds the blob (whole: blobs only appear by rename).
func (w *Writer) HasBlob(h v1.Hash) bool {
	_, err := os.Stat(w.blobPath(h))
	return err == nil
}

// WriteBlob stores r as the blob h, verifying its digest (and size, unless size < 0) before the
// blob appears. A blob already stored is counted as reused and r is not read.
func (w *Writer) WriteBlob(ctx context.Context, h v1.Hash, size int64, r io.Reader) error {
	if h.Algorithm != "sha256" || len(h.Hex) != 64 {
		return fmt.Errorf("mirror: blob %s: only sha256 digests are supported", h)
	}
	if w.HasBlob(h) {
		w.count(func(s *Stats) { s.BlobsReused++ })
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(w.blobPath(h)), "."+h.Hex+".partial-*")
	if err != nil {
		return fmt.Errorf("mirror: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, sum), ctxReader{ctx, r})
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("mirror: blob %s: %w", h, err)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != h.Hex {
		return fmt.Errorf("mirror: blob %s: the content read hashes to sha256:%s", h, got)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("mirror: blob %s: read %d bytes, want %d", h, n, size)
	}
	if err := os.Rename(tmp.Name(), w.blobPath(h)); err != nil {
		return fmt.Errorf("mirror: blob %s: %w", h, err)
	}
	w.count(func(s *Stats) { s.BlobsWritten++; s.BytesWritten += n })
	return nil
}

func (w *Writer) count(f func(*Stats)) {
	w.mu.Lock()
	f(&w.stats)
	w.mu.Unlock()
}

// AddImage stores img (any OCI or Docker image manifest, including package artifacts) as it.
// Blobs already stored are not read again.
func (w *Writer) AddImage(ctx context.Context, it Item, img v1.Image) (Item, error) {
	raw, err := img.RawManifest()
	if err != nil {
		return it, fmt.Errorf("mirror: %s: manifest: %w", it.Path, err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return it, fmt.Errorf("mirror: %s: %w", it.Path, err)
	}
	mf, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return it, fmt.Errorf("mirror: %s: manifest: %w", it.Path, err)
	}
	if it.Kind != KindImage {
		if err := checkPackage(it, mf); err != nil {
			return it, fmt.Errorf("mirror: %w", err)
		}
	}
	if !w.HasBlob(mf.Config.Digest) {
		cfg, err := img.RawConfigFile()
		if err != nil {
			return it, fmt.Errorf("mirror: %s: config: %w", it.Path, err)
		}
		if err := w.WriteBlob(ctx, mf.Config.Digest, mf.Config.Size, bytes.NewReader(cfg)); err != nil {
			return it, fmt.Errorf("mirror: %s: config: %w", it.Path, err)
		}
	} else {
		w.count(func(s *Stats) { s.BlobsReused++ })
	}
	for _, d := range mf.Layers {
		if w.HasBlob(d.Digest) {
			w.count(func(s *Stats) { s.BlobsReused++ })
			continue
		}
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return it, fmt.Errorf("mirror: %s: layer %s: %w", it.Path, d.Digest, err)
		}
		rc, err := l.Compressed()
		if err != nil {
			return it, fmt.Errorf("mirror: %s: layer %s: %w", it.Path, d.Digest, err)
		}
		err = w.WriteBlob(ctx, d.Digest, d.Size, rc)
		rc.Close()
		if err != nil {
			return it, fmt.Errorf("mirror: %s: layer %s: %w", it.Path, d.Digest, err)
		}
	}
	return w.addManifest(ctx, it, raw, mt, mf)
}

// PackageFileSource opens one file of a package for AddPackage.
type PackageFileSource func(ctx context.Context, f PackageFileRef) (io.ReadCloser, error)

// PackageFileRef names one file of a package: the version map's name, URL and sha256.
type PackageFileRef struct {
	Package string
	Name    string
	URL     string
	SHA256  string
}

// AddPackage builds the package artifact of it from its files, each read from open and verified
// against the version map's sha256 before it is stored.
func (w *Writer) AddPackage(ctx context.Context, it Item, open PackageFileSource) (Item, error) {
	var layers []PackageLayer
	for _, f := range it.Files {
		h := v1.Hash{Algorithm: "sha256", Hex: f.SHA256}
		if !w.HasBlob(h) {
			rc, err := open(ctx, PackageFileRef{Package: it.Name, Name: f.Name, URL: f.URL, SHA256: f.SHA256})
			if err != nil {
				return it, fmt.Errorf("mirror: package %s file %s: %w", it.Name, f.Name, err)
			}
			err = w.WriteBlob(ctx, h, -1, rc)
			rc.Close()
			if err != nil {
				return it, fmt.Errorf("mirror: package %s file %s (the version map's sha256 is checked where a file enters): %w", it.Name, f.Name, err)
			}
		} else {
			w.count(func(s *Stats) { s.BlobsReused++ })
		}
		st, err := os.Stat(w.blobPath(h))
		if err != nil {
			return it, fmt.Errorf("mirror: %w", err)
		}
		layers = append(layers, PackageLayer{Name: f.Name, Hash: h, Size: st.Size()})
	}
	raw, cfg, err := PackageManifest(it.Name, it.Version, layers)
	if err != nil {
		return it, err
	}
	mf, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return it, err
	}
	if err := w.WriteBlob(ctx, mf.Config.Digest, mf.Config.Size, bytes.NewReader(cfg)); err != nil {
		return it, err
	}
	return w.addManifest(ctx, it, raw, types.OCIManifestSchema1, mf)
}

func (w *Writer) addManifest(ctx context.Context, it Item, raw []byte, mt types.MediaType, mf *v1.Manifest) (Item, error) {
	h, n, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return it, err
	}
	if err := w.WriteBlob(ctx, h, n, bytes.NewReader(raw)); err != nil {
		return it, fmt.Errorf("mirror: %s: manifest: %w", it.Path, err)
	}
	blobs := []string{h.String(), mf.Config.Digest.String()}
	size := n + mf.Config.Size
	for _, l := range mf.Layers {
		blobs = append(blobs, l.Digest.String())
		size += l.Size
	}
	it.Digest, it.Size = h.String(), size
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done[it.Path] = workItem{Item: it, MediaType: mt, Blobs: blobs}
	data, err := json.MarshalIndent(w.done, "", "  ")
	if err != nil {
		return it, err
	}
	if err := atomicfile.Write(filepath.Join(w.work, doneFile), data, 0o644); err != nil {
		return it, fmt.Errorf("mirror: recording %s: %w", it.Path, err)
	}
	return it, nil
}

// Finish packs items (each must be done) into the bundle's archives, split into chunks of at
// most chunkSize bytes when chunkSize > 0, writes the bundle's manifest last and removes the work
// dir. Killed at any instant, a re-run of the pull packs again from the work dir.
func (w *Writer) Finish(ctx context.Context, items []Item, chunkSize int64) (*Manifest, error) {
	byArchive := map[string][]workItem{}
	var final []Item
	for _, it := range items {
		w.mu.Lock()
		wi, ok := w.done[it.Path]
		w.mu.Unlock()
		if _, whole := w.Done(it.Path); !ok || !whole {
			return nil, fmt.Errorf("mirror: %s was not stored whole", it.Path)
		}
		byArchive[it.Archive] = append(byArchive[it.Archive], wi)
		final = append(final, wi.Item)
	}
	m := &Manifest{Format: ManifestFormat, Items: final}
	names := make([]string, 0, len(byArchive))
	for a := range byArchive {
		names = append(names, a)
	}
	sort.Strings(names)
	// The old manifest goes first: from here on the directory is not a bundle until the new one
	// is written.
	if err := os.Remove(filepath.Join(w.dir, ManifestFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	var written []chunkFile
	var err error
	for _, a := range names {
		files, err := w.pack(ctx, a, byArchive[a], chunkSize)
		if err != nil {
			return nil, err
		}
		arch := Archive{Name: a}
		for _, f := range files {
			arch.Files = append(arch.Files, f.ArchiveFile)
		}
		written = append(written, files...)
		m.Archives = append(m.Archives, arch)
	}
	if err := removeStaleArchives(w.dir); err != nil {
		return nil, err
	}
	if m.TerraformPlugins, err = w.layOutProviders(final); err != nil {
		return nil, err
	}
	for _, f := range written {
		if err := os.Rename(f.tmp, filepath.Join(w.dir, f.Name)); err != nil {
			return nil, fmt.Errorf("mirror: %w", err)
		}
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(w.dir, ManifestFile), append(data, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("mirror: writing the bundle manifest: %w", err)
	}
	if err := os.RemoveAll(w.work); err != nil {
		return nil, fmt.Errorf("mirror: removing the work dir: %w", err)
	}
	return m, nil
}

// pack writes one archive: an OCI image layout (oci-layout, index.json naming every item by its
// path, each blob once) as a tar, split into chunks, under temporary names.
func (w *Writer) pack(ctx context.Context, archive string, items []workItem, chunkSize int64) ([]chunkFile, error) {
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	seen := map[string]bool{}
	var blobs []string
	for _, wi := range items {
		h, err := v1.NewHash(wi.Item.Digest)
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(w.blobPath(h))
		if err != nil {
			return nil, fmt.Errorf("mirror: %s: %w", wi.Item.Path, err)
		}
		idx.Manifests = append(idx.Manifests, v1.Descriptor{MediaType: wi.MediaType, Size: st.Size(), Digest: h,
			Annotations: map[string]string{refNameAnnotation: wi.Item.Path}})
		for _, b := range wi.Blobs {
			if !seen[b] {
				seen[b] = true
				blobs = append(blobs, b)
			}
		}
	}
	sort.Strings(blobs)
	index, err := json.Marshal(idx)
	if err != nil {
		return nil, err
	}
	cw := &chunkWriter{dir: w.dir, base: archive, limit: chunkSize}
	tw := newTarWriter(cw)
	if err := tw.add("oci-layout", int64(len(ociLayout)), bytes.NewReader([]byte(ociLayout))); err != nil {
		return nil, cw.abort(err)
	}
	if err := tw.add("index.json", int64(len(index)), bytes.NewReader(index)); err != nil {
		return nil, cw.abort(err)
	}
	for _, b := range blobs {
		h, _ := v1.NewHash(b)
		f, err := os.Open(w.blobPath(h))
		if err != nil {
			return nil, cw.abort(fmt.Errorf("mirror: %w", err))
		}
		st, err := f.Stat()
		if err == nil {
			err = tw.add("blobs/"+h.Algorithm+"/"+h.Hex, st.Size(), ctxReader{ctx, f})
		}
		f.Close()
		if err != nil {
			return nil, cw.abort(fmt.Errorf("mirror: packing %s: %w", archive, err))
		}
	}
	if err := tw.close(); err != nil {
		return nil, cw.abort(err)
	}
	return cw.finish()
}

const ociLayout = `{"imageLayoutVersion":"1.0.0"}`

// TerraformPluginsDir is the bundle's filesystem mirror of provider plugins, in the "packed"
// layout both engines read: give it to --terraform-plugins-dir.
const TerraformPluginsDir = "terraform-plugins"

// providerHosts are the registry host names an engine may resolve a provider source to
// (OpenTofu: registry.opentofu.org, Terraform: registry.terraform.io).
var providerHosts = [...]string{"registry.opentofu.org", "registry.terraform.io"}

// layOutProviders writes the provider plugin zips of items as a filesystem mirror under the
// bundle (replacing an earlier one) and returns the files with their sums.
func (w *Writer) layOutProviders(items []Item) ([]ArchiveFile, error) {
	root := filepath.Join(w.dir, TerraformPluginsDir)
	if err := os.RemoveAll(root); err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	var out []ArchiveFile
	for _, it := range items {
		if it.Kind != KindTerraformProvider {
			continue
		}
		for _, f := range it.Files {
			h := v1.Hash{Algorithm: "sha256", Hex: f.SHA256}
			st, err := os.Stat(w.blobPath(h))
			if err != nil {
				return nil, fmt.Errorf("mirror: %s: %w", it.Path, err)
			}
			for _, host := range providerHosts {
				rel := filepath.Join(TerraformPluginsDir, host, filepath.FromSlash(it.Source), f.Name)
				dst := filepath.Join(w.dir, rel)
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					return nil, fmt.Errorf("mirror: %w", err)
				}
				// A hard link of the verified blob: the work dir goes, the file stays.
				if err := os.Link(w.blobPath(h), dst); err != nil {
					src, err := os.Open(w.blobPath(h))
					if err != nil {
						return nil, fmt.Errorf("mirror: %w", err)
					}
					err = atomicCopy(dst, src)
					src.Close()
					if err != nil {
						return nil, fmt.Errorf("mirror: %s: %w", rel, err)
					}
				}
				out = append(out, ArchiveFile{Name: filepath.ToSlash(rel), Size: st.Size(), SHA256: f.SHA256})
			}
		}
	}
	return out, nil
}

func atomicCopy(dst string, r io.Reader) error {
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".partial-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, r)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// removeStaleArchives removes the archive files of an earlier bundle in dir.
func removeStaleArchives(dir string) error {
	for _, pat := range []string{"*.tar", "*.chunk"} {
		old, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return err
		}
		for _, f := range old {
			if err := os.Remove(f); err != nil {
				return fmt.Errorf("mirror: removing %s of an earlier bundle: %w", f, err)
			}
		}
	}
	return nil
}

// ctxReader stops a long copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// verifyingReader hashes what it reads and, at the end, fails unless the content is the digest.
type verifyingReader struct {
	r    io.Reader
	h    hash.Hash
	want v1.Hash
	what func(got string) error
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	if errors.Is(err, io.EOF) {
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want.Hex {
			return n, v.what("sha256:" + got)
		}
	}
	return n, err
}

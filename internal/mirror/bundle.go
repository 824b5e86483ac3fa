package mirror

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ManifestFile is the bundle's manifest, written last: a directory without it is not a bundle.
const ManifestFile = "dhctl-bundle.json"

// ManifestFormat names the manifest's shape.
const ManifestFormat = "dhctl-bundle/v1"

// maxManifestSize bounds what Open reads of a manifest.
const maxManifestSize = 16 << 20

// Manifest lists a bundle's items and files.
type Manifest struct {
	Format   string    `json:"format"`
	Items    []Item    `json:"items"`
	Archives []Archive `json:"archives"`
	// TerraformPlugins are the provider plugin files under TerraformPluginsDir.
	TerraformPlugins []ArchiveFile `json:"terraformPlugins,omitempty"`
}

// Archive is one OCI image layout of the bundle, as a tar in one file or in chunks (their
// concatenation is the tar).
type Archive struct {
	Name  string        `json:"name"`
	Files []ArchiveFile `json:"files"`
}

// ArchiveFile is one file of an archive, with its sha256 (for `sha256sum` after a copy).
type ArchiveFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Size is the sum of the bundle's files.
func (m *Manifest) Size() int64 {
	var n int64
	for _, a := range m.Archives {
		for _, f := range a.Files {
			n += f.Size
		}
	}
	for _, f := range m.TerraformPlugins {
		n += f.Size
	}
	return n
}

// chunkFile is an archive file written under a temporary name.
type chunkFile struct {
	ArchiveFile
	tmp string
}

// chunkWriter writes an archive as <base>.tar, or as <base>.0000.chunk, <base>.0001.chunk, ...
// of at most limit bytes each, under temporary names until Finish renames them.
type chunkWriter struct {
	dir, base string
	limit     int64
	files     []chunkFile
	cur       *os.File
	n         int64
	h         hash.Hash
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if c.cur == nil || (c.limit > 0 && c.n == c.limit) {
			if err := c.next(); err != nil {
				return written, err
			}
		}
		part := p
		if c.limit > 0 && int64(len(part)) > c.limit-c.n {
			part = part[:c.limit-c.n]
		}
		n, err := c.cur.Write(part)
		c.h.Write(part[:n])
		c.n += int64(n)
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

func (c *chunkWriter) next() error {
	if err := c.closeCurrent(); err != nil {
		return err
	}
	name := c.base + ".tar"
	if c.limit > 0 {
		name = fmt.Sprintf("%s.%04d.chunk", c.base, len(c.files))
	}
	f, err := os.CreateTemp(c.dir, "."+name+".partial-*")
	if err != nil {
		return fmt.Errorf("mirror: %w", err)
	}
	// A bundle holds no secret: readable by whoever copies it to removable media.
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("mirror: %w", err)
	}
	c.cur, c.n, c.h = f, 0, sha256.New()
	c.files = append(c.files, chunkFile{ArchiveFile: ArchiveFile{Name: name}, tmp: f.Name()})
	return nil
}

func (c *chunkWriter) closeCurrent() error {
	if c.cur == nil {
		return nil
	}
	last := &c.files[len(c.files)-1]
	last.Size, last.SHA256 = c.n, hex.EncodeToString(c.h.Sum(nil))
	err := c.cur.Sync()
	if cerr := c.cur.Close(); err == nil {
		err = cerr
	}
	c.cur = nil
	if err != nil {
		return fmt.Errorf("mirror: writing %s: %w", last.Name, err)
	}
	return nil
}

func (c *chunkWriter) finish() ([]chunkFile, error) {
	if err := c.closeCurrent(); err != nil {
		return nil, c.abort(err)
	}
	return c.files, nil
}

// abort removes what was written and returns err.
func (c *chunkWriter) abort(err error) error {
	if c.cur != nil {
		c.cur.Close()
		c.cur = nil
	}
	for _, f := range c.files {
		os.Remove(f.tmp)
	}
	return err
}

// tarWriter writes a deterministic tar: plain files, mode 0644, no times or owners.
type tarWriter struct{ tw *tar.Writer }

func newTarWriter(w io.Writer) *tarWriter { return &tarWriter{tw: tar.NewWriter(w)} }

func (t *tarWriter) add(name string, size int64, r io.Reader) error {
	if err := t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, Format: tar.FormatPAX}); err != nil {
		return err
	}
	n, err := io.Copy(t.tw, r)
	if err == nil && n != size {
		err = fmt.Errorf("%s: %d bytes, want %d", name, n, size)
	}
	return err
}

func (t *tarWriter) close() error { return t.tw.Close() }

// Bundle is an opened bundle: its manifest and an index of every archive's blobs, read in place
// (chunks are not joined on disk).
type Bundle struct {
	Dir      string
	Manifest Manifest
	archives map[string]*archiveReader
}

type archiveReader struct {
	name  string
	files []*os.File
	ra    *multiReaderAt
	blobs map[string]section // "sha256:<hex>" -> where its bytes are
	index v1.IndexManifest
}

type section struct {
	file string // the archive file the blob starts in, for errors
	off  int64
	size int64
}

// Open reads dir's manifest and indexes its archives. A missing or truncated file, or a tar
// that cannot be read, is reported with its name; blob contents are verified when read.
func Open(dir string) (*Bundle, error) {
	f, err := os.Open(filepath.Join(dir, ManifestFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("mirror: %s is not a bundle: it has no %s (an interrupted pull writes it last; run the pull again)", dir, ManifestFile)
		}
		return nil, fmt.Errorf("mirror: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	if len(data) > maxManifestSize {
		return nil, fmt.Errorf("mirror: %s: larger than %d MiB, not a bundle manifest", filepath.Join(dir, ManifestFile), maxManifestSize>>20)
	}
	b := &Bundle{Dir: dir, archives: map[string]*archiveReader{}}
	if err := json.Unmarshal(data, &b.Manifest); err != nil {
		return nil, fmt.Errorf("mirror: %s: %w", filepath.Join(dir, ManifestFile), err)
	}
	if b.Manifest.Format != ManifestFormat {
		return nil, fmt.Errorf("mirror: %s: format %q, this dhctl reads %q", filepath.Join(dir, ManifestFile), b.Manifest.Format, ManifestFormat)
	}
	for _, a := range b.Manifest.Archives {
		ar, err := openArchive(dir, a)
		if err != nil {
			b.Close()
			return nil, err
		}
		b.archives[a.Name] = ar
	}
	for _, it := range b.Manifest.Items {
		ar, ok := b.archives[it.Archive]
		if !ok {
			b.Close()
			return nil, fmt.Errorf("mirror: %s: item %s is in archive %q, which the bundle does not have", ManifestFile, it.Path, it.Archive)
		}
		if _, ok := ar.blobs[it.Digest]; !ok {
			b.Close()
			return nil, fmt.Errorf("mirror: bundle %s: the manifest of %s (%s) is not in %s", dir, it.Path, it.Digest, ar.fileNames())
		}
	}
	return b, nil
}

func openArchive(dir string, a Archive) (*archiveReader, error) {
	ar := &archiveReader{name: a.Name, blobs: map[string]section{}, ra: &multiReaderAt{}}
	for _, af := range a.Files {
		if !plainName(af.Name) {
			ar.close()
			return nil, fmt.Errorf("mirror: %s: archive file name %q must be a plain name", ManifestFile, af.Name)
		}
		f, err := os.Open(filepath.Join(dir, af.Name))
		if err != nil {
			ar.close()
			return nil, fmt.Errorf("mirror: bundle %s: %w", dir, err)
		}
		ar.files = append(ar.files, f)
		st, err := f.Stat()
		if err != nil {
			ar.close()
			return nil, fmt.Errorf("mirror: %w", err)
		}
		if st.Size() != af.Size {
			ar.close()
			return nil, fmt.Errorf("mirror: bundle %s: %s has %d bytes, the manifest says %d: it was not copied whole", dir, af.Name, st.Size(), af.Size)
		}
		ar.ra.add(af.Name, f, af.Size)
	}
	sr := io.NewSectionReader(ar.ra, 0, ar.ra.size)
	tr := tar.NewReader(sr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		pos, _ := sr.Seek(0, io.SeekCurrent)
		if err != nil {
			ar.close()
			return nil, fmt.Errorf("mirror: bundle %s: %s is not a readable tar near byte %d of the archive: %v; copy or pull the bundle again", dir, ar.fileNames(), pos, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		switch {
		case hdr.Name == "index.json":
			if hdr.Size > maxManifestSize {
				ar.close()
				return nil, fmt.Errorf("mirror: bundle %s: %s: index.json is too large", dir, ar.fileNames())
			}
			if err := json.NewDecoder(tr).Decode(&ar.index); err != nil {
				ar.close()
				return nil, fmt.Errorf("mirror: bundle %s: %s: index.json: %v", dir, ar.fileNames(), err)
			}
		case strings.HasPrefix(hdr.Name, "blobs/sha256/"):
			hexd := strings.TrimPrefix(hdr.Name, "blobs/sha256/")
			ar.blobs["sha256:"+hexd] = section{file: ar.ra.fileAt(pos), off: pos, size: hdr.Size}
		}
	}
	return ar, nil
}

func (ar *archiveReader) fileNames() string {
	var n []string
	for _, p := range ar.ra.parts {
		n = append(n, p.name)
	}
	return strings.Join(n, "+")
}

func (ar *archiveReader) close() {
	for _, f := range ar.files {
		f.Close()
	}
}

// Close closes the bundle's files.
func (b *Bundle) Close() error {
	for _, ar := range b.archives {
		ar.close()
	}
	return nil
}

// blob opens a blob of an item for reading; its content is verified against its digest at the
// end, and a mismatch names the item and the archive file.
func (ar *archiveReader) blob(it Item, h v1.Hash) (io.ReadCloser, int64, error) {
	s, ok := ar.blobs[h.String()]
	if !ok {
		return nil, 0, fmt.Errorf("mirror: bundle: blob %s of %s is missing from %s", h, it.Path, ar.fileNames())
	}
	r := &verifyingReader{r: io.NewSectionReader(ar.ra, s.off, s.size), h: sha256.New(), want: h, what: func(got string) error {
		return &CorruptBlobError{Item: it.Path, Kind: string(it.Kind), File: s.file, Digest: h.String(), Got: got}
	}}
	return io.NopCloser(r), s.size, nil
}

func (ar *archiveReader) readBlob(it Item, h v1.Hash) ([]byte, error) {
	rc, size, err := ar.blob(it, h)
	if err != nil {
		return nil, err
	}
	if size > maxManifestSize {
		return nil, fmt.Errorf("mirror: bundle: blob %s of %s is %d bytes, too large for a manifest or config", h, it.Path, size)
	}
	return io.ReadAll(rc)
}

// Image returns the item as an image (an image or a package artifact) read from the bundle.
func (b *Bundle) Image(it Item) (v1.Image, error) {
	ar, ok := b.archives[it.Archive]
	if !ok {
		return nil, fmt.Errorf("mirror: bundle has no archive %q for %s", it.Archive, it.Path)
	}
	h, err := v1.NewHash(it.Digest)
	if err != nil {
		return nil, fmt.Errorf("mirror: %s: digest %q: %w", it.Path, it.Digest, err)
	}
	raw, err := ar.readBlob(it, h)
	if err != nil {
		return nil, err
	}
	mf, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("mirror: %s: manifest: %w", it.Path, err)
	}
	mt := mf.MediaType
	for _, d := range ar.index.Manifests {
		if d.Digest == h && d.MediaType != "" {
			mt = d.MediaType
		}
	}
	if mt == "" {
		mt = types.OCIManifestSchema1
	}
	return partial.CompressedToImage(&bundleImage{ar: ar, it: it, raw: raw, mt: mt, mf: mf})
}

type bundleImage struct {
	ar  *archiveReader
	it  Item
	raw []byte
	mt  types.MediaType
	mf  *v1.Manifest
}

func (i *bundleImage) RawManifest() ([]byte, error)        { return i.raw, nil }
func (i *bundleImage) MediaType() (types.MediaType, error) { return i.mt, nil }
func (i *bundleImage) RawConfigFile() ([]byte, error) {
	return i.ar.readBlob(i.it, i.mf.Config.Digest)
}

func (i *bundleImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h == i.mf.Config.Digest {
		return &bundleLayer{img: i, d: i.mf.Config}, nil
	}
	for _, l := range i.mf.Layers {
		if l.Digest == h {
			return &bundleLayer{img: i, d: l}, nil
		}
	}
	return nil, fmt.Errorf("mirror: %s has no layer %s", i.it.Path, h)
}

type bundleLayer struct {
	img *bundleImage
	d   v1.Descriptor
}

func (l *bundleLayer) Digest() (v1.Hash, error)            { return l.d.Digest, nil }
func (l *bundleLayer) Size() (int64, error)                { return l.d.Size, nil }
func (l *bundleLayer) MediaType() (types.MediaType, error) { return l.d.MediaType, nil }
func (l *bundleLayer) Compressed() (io.ReadCloser, error) {
	rc, _, err := l.img.ar.blob(l.img.it, l.d.Digest)
	return rc, err
}

// multiReaderAt reads the concatenation of an archive's chunk files.
type multiReaderAt struct {
	parts []part
	size  int64
}

type part struct {
	name string
	r    io.ReaderAt
	off  int64
	size int64
}

func (m *multiReaderAt) add(name string, r io.ReaderAt, size int64) {
	m.parts = append(m.parts, part{name: name, r: r, off: m.size, size: size})
	m.size += size
}

func (m *multiReaderAt) fileAt(off int64) string {
	for _, p := range m.parts {
		if off < p.off+p.size {
			return p.name
		}
	}
	if len(m.parts) > 0 {
		return m.parts[len(m.parts)-1].name
	}
	return ""
}

func (m *multiReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= m.size {
		return 0, io.EOF
	}
	n := 0
	for _, pt := range m.parts {
		if len(p) == 0 {
			break
		}
		if off >= pt.off+pt.size || off < pt.off {
			continue
		}
		want := p
		if rest := pt.off + pt.size - off; int64(len(want)) > rest {
			want = want[:rest]
		}
		k, err := pt.r.ReadAt(want, off-pt.off)
		n += k
		off += int64(k)
		p = p[k:]
		if err != nil && !errors.Is(err, io.EOF) {
			return n, err
		}
		if k < len(want) {
			return n, io.ErrUnexpectedEOF
		}
	}
	if len(p) > 0 {
		return n, io.EOF
	}
	return n, nil
}

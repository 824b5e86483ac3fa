package images

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

func TestLayerIsReproducible(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "bin")
	os.WriteFile(src, []byte("binary"), 0o755)
	files := []File{{Path: "/usr/local/bin/tool", Source: src}, {Path: "/etc/conf", Data: []byte("x"), Mode: 0o644}, {Path: "/usr/bin/alias", Link: "../local/bin/tool"}}
	a, err := LayerFromFiles(filepath.Join(dir, "c1"), files)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LayerFromFiles(filepath.Join(dir, "c2"), reversed(files))
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Errorf("same files, different layer digests %v and %v", da, db)
	}
	img, err := Image([]v1.Layer{a}, Config{Entrypoint: []string{"/usr/local/bin/tool"}})
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	if cf.Config.Env[0] != "PATH="+DefaultPath || cf.Architecture != "amd64" || cf.OS != "linux" {
		t.Errorf("image config %+v", cf)
	}
	got := map[string]*tar.Header{}
	tr := tar.NewReader(mutate.Extract(img))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
	}
	for _, want := range []string{"usr", "usr/local", "usr/local/bin", "usr/local/bin/tool", "etc/conf", "usr/bin/alias"} {
		if got[want] == nil {
			t.Errorf("image lacks %s (has %v)", want, keys(got))
		}
	}
	if h := got["usr/local/bin/tool"]; h != nil && h.Mode != 0o755 {
		t.Errorf("tool mode %o, want 755", h.Mode)
	}
	if h := got["usr/bin/alias"]; h != nil && (h.Typeflag != tar.TypeSymlink || h.Linkname != "../local/bin/tool") {
		t.Errorf("alias is %v -> %q", h.Typeflag, h.Linkname)
	}
	if _, err := LayerFromFiles(dir, []File{{Path: "relative", Data: []byte("x")}}); err == nil {
		t.Error("a relative path was accepted")
	}
}

func TestTreeFilesKeepsLinks(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/sbin"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/sbin/multi"), []byte("x"), 0o750)
	os.Symlink("multi", filepath.Join(root, "usr/sbin/alias"))
	files, err := TreeFiles(root, "/")
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string]File{}
	for _, f := range files {
		byPath[f.Path] = f
	}
	if f := byPath["/usr/sbin/multi"]; f.Mode != 0o750 || f.Source == "" {
		t.Errorf("regular file: %+v", f)
	}
	if f := byPath["/usr/sbin/alias"]; f.Link != "multi" {
		t.Errorf("link: %+v", f)
	}
}

func keys[V any](m map[string]V) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	return k
}

func reversed(f []File) []File {
	r := make([]File, len(f))
	for i := range f {
		r[len(f)-1-i] = f[i]
	}
	return r
}

func TestLayerCacheHitAndInvalidation(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "bin")
	os.WriteFile(src, []byte("one"), 0o755)
	files := []File{{Path: "/bin/tool", Source: src}}
	first, err := LayerFromFiles(dir, files)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LayerFromFiles(dir, files)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := again.(*cachedLayer); !ok {
		t.Fatalf("second LayerFromFiles with unchanged files returned %T, want the cached layer", again)
	}
	d1, _ := first.Digest()
	d2, _ := again.Digest()
	id1, _ := first.DiffID()
	id2, _ := again.DiffID()
	if d1 != d2 || id1 != id2 {
		t.Errorf("cached layer digests %v/%v differ from %v/%v", d2, id2, d1, id1)
	}
	rc, _ := again.Compressed()
	h, _, err := v1.SHA256(rc)
	rc.Close()
	if err != nil || h != d1 {
		t.Errorf("cached layer content hashes to %v, want %v (%v)", h, d1, err)
	}
	os.WriteFile(src, []byte("two!"), 0o755)
	changed, err := LayerFromFiles(dir, files)
	if err != nil {
		t.Fatal(err)
	}
	if d3, _ := changed.Digest(); d3 == d1 {
		t.Errorf("changed source gave the old layer %v", d3)
	}
}

package packages

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/dhctl-dev/dhctl/internal/config"
)

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func start(t *testing.T, opts Options) string {
	t.Helper()
	opts.CacheDir = t.TempDir()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return "http://" + addr
}

func TestUpstream(t *testing.T) {
	kubelet := []byte("#!/bin/sh\necho kubelet\n")
	hits := 0
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		if r.URL.Path == "/tampered" {
			w.Write([]byte("not what was published"))
			return
		}
		w.Write(kubelet)
	}))
	defer up.Close()
	url := start(t, Options{Packages: map[string]config.Package{
		"kubelet": {Version: "v1.33.13", URL: up.URL + "/kubelet", SHA256: sum(kubelet)},
		"kubectl": {Version: "v1.33.13", URL: up.URL + "/tampered", SHA256: sum([]byte("the kubectl that was published"))},
	}})
	for i := 0; i < 2; i++ {
		if code, body := get(t, url+"/packages/kubelet/kubelet"); code != 200 || body != string(kubelet) {
			t.Fatalf("kubelet: %d %q", code, body)
		}
	}
	if hits != 1 {
		t.Errorf("upstream fetched %d times; the verified file should be cached", hits)
	}
	if code, body := get(t, url+"/packages/kubectl/tampered"); code != http.StatusBadGateway || !strings.Contains(body, "package kubectl file tampered: checksum mismatch") {
		t.Errorf("tampered: %d %q", code, body)
	}
	if code, body := get(t, url+"/packages/kubeadm/kubeadm"); code != 404 || !strings.Contains(body, "not in the version map") {
		t.Errorf("unknown: %d %q", code, body)
	}
}

func TestRegistry(t *testing.T) {
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	deb := []byte("!<arch>\ndebian-binary...")
	layer := static.NewLayer(deb, types.MediaType("application/vnd.debian.binary-package"))
	repo, err := name.NewRepository(host+"/dhctl/packages/containerd", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(repo, layer); err != nil {
		t.Fatal(err)
	}
	url := start(t, Options{
		Registry: &Registry{Repo: host + "/dhctl", Insecure: true},
		Packages: map[string]config.Package{
			"containerd": {Version: "1.6.20~ds1-1+deb12u3", Files: []config.PackageFile{{Name: "containerd_1.6.20_amd64.deb", SHA256: sum(deb)}}},
			"runc":       {Version: "1.1.5", Files: []config.PackageFile{{Name: "runc.deb", SHA256: strings.Repeat("0", 64)}}},
		},
	})
	if code, body := get(t, url+"/packages/containerd/containerd_1.6.20_amd64.deb"); code != 200 || body != string(deb) {
		t.Fatalf("containerd: %d %q", code, body)
	}
	if code, body := get(t, url+"/packages/runc/runc.deb"); code != http.StatusBadGateway || !strings.Contains(body, "package runc file runc.deb: no blob with the version map's sha256") {
		t.Errorf("missing blob: %d %q", code, body)
	}
}

// Prefetch puts every file the registry has into the cache before any node asks: the nodes'
// requests then read no blob from the registry. A file the registry lacks is still reported to
// the node that asks for it. After Close, nothing is fetched.
func TestPrefetch(t *testing.T) {
	var blobGets atomic.Int32
	regHandler := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			blobGets.Add(1)
		}
		regHandler.ServeHTTP(w, r)
	}))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	pkgs := map[string]config.Package{"runc": {Version: "1", Files: []config.PackageFile{{Name: "gone.deb", SHA256: strings.Repeat("0", 64)}}}}
	for _, p := range []string{"containerd", "kubelet", "kubeadm"} {
		data := []byte("the file of " + p)
		repo, err := name.NewRepository(host+"/dhctl/packages/"+p, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteLayer(repo, static.NewLayer(data, types.MediaType("application/octet-stream"))); err != nil {
			t.Fatal(err)
		}
		pkgs[p] = config.Package{Version: "1", Files: []config.PackageFile{{Name: p, SHA256: sum(data)}}}
	}
	cache := t.TempDir()
	s, err := New(Options{Registry: &Registry{Repo: host + "/dhctl", Insecure: true}, Packages: pkgs, CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	blobGets.Store(0)
	s.Prefetch()
	cached := func() int {
		n := 0
		for _, p := range []string{"containerd", "kubelet", "kubeadm"} {
			if _, err := os.Stat(filepath.Join(cache, pkgs[p].Files[0].SHA256)); err == nil {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for cached() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s, %d of 3 files prefetched", cached())
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := blobGets.Load()
	if before < 3 {
		t.Fatalf("the prefetch read %d blobs, want 3 or more", before)
	}
	for _, p := range []string{"containerd", "kubelet", "kubeadm"} {
		if code, body := get(t, "http://"+addr+"/packages/"+p+"/"+p); code != 200 || body != "the file of "+p {
			t.Errorf("%s: %d %q", p, code, body)
		}
	}
	if got := blobGets.Load(); got != before {
		t.Errorf("the nodes' requests read %d more blobs from the registry, want none", got-before)
	}
	if code, body := get(t, "http://"+addr+"/packages/runc/gone.deb"); code != http.StatusBadGateway || !strings.Contains(body, "package runc file gone.deb") {
		t.Errorf("a file the registry lacks: %d %q", code, body)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(cache)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Errorf("the cache holds %d entries after Close, want the 3 files", len(entries))
	}
}

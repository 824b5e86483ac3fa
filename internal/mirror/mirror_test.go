package mirror

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/registrytest"
)

// upstream is what a pull without --source reads: images in a real registry (TLS with a
// private CA, basic auth) and package files behind URLs.
type upstream struct {
	reg   *registrytest.Registry
	files *httptest.Server
	// served counts the bytes of package files served.
	served atomic.Int64
	vm     *config.VersionMap
	images map[string]v1.Hash // name -> digest as pushed
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{reg: registrytest.Start(t), images: map[string]v1.Hash{}}
	content := map[string][]byte{
		"tool":                      randomBytes(t, 300_000),
		"runtime_1.0~rc1_amd64.deb": randomBytes(t, 200_000),
		"plugin-a":                  randomBytes(t, 50_000),
		"terraform-provider-vsphere_2.1.1_linux_amd64.zip": randomBytes(t, 120_000),
	}
	u.files = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, ok := content[strings.TrimPrefix(r.URL.Path, "/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		if r.Method == http.MethodHead {
			return
		}
		n, _ := w.Write(data)
		u.served.Add(int64(n))
	}))
	t.Cleanup(u.files.Close)
	sum := func(n string) string { s := sha256.Sum256(content[n]); return hex.EncodeToString(s[:]) }
	rel := config.KubernetesRelease{Patch: "1.33.13", Images: map[string]config.Image{}, Packages: map[string]config.Package{
		"tool":    {Version: "v1.33.13", URL: u.files.URL + "/tool", SHA256: sum("tool"), Dest: "/usr/local/bin"},
		"runtime": {Version: "1.0~rc1", URL: u.files.URL + "/runtime_1.0~rc1_amd64.deb", SHA256: sum("runtime_1.0~rc1_amd64.deb")},
		"plugins": {Version: "v1.0.0", Files: []config.PackageFile{{Name: "plugin-a", URL: u.files.URL + "/plugin-a", SHA256: sum("plugin-a")}, {Name: "tool", URL: u.files.URL + "/tool", SHA256: sum("tool")}}},
	}}
	// Two images share their base layers, as kube-apiserver and kube-scheduler do.
	base, err := random.Image(400_000, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"kube-apiserver", "kube-scheduler", "pause"} {
		img := base
		if n != "pause" {
			extra, err := random.Layer(150_000, "application/vnd.oci.image.layer.v1.tar+gzip")
			if err != nil {
				t.Fatal(err)
			}
			if img, err = mutateAppend(base, extra); err != nil {
				t.Fatal(err)
			}
		} else if img, err = random.Image(20_000, 1); err != nil {
			t.Fatal(err)
		}
		repo := u.reg.Host + "/upstream/" + n
		ref, _ := name.ParseReference(repo + ":v1")
		if err := remote.Write(ref, img, remote.WithTransport(u.reg.Transport()), remote.WithAuth(&authn.Basic{Username: u.reg.User, Password: u.reg.Password})); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		u.images[n] = d
		rel.Images[n] = config.Image{Repository: repo, Tag: "v1"}
	}
	u.vm = &config.VersionMap{DefaultMinor: "1.33", Kubernetes: map[string]config.KubernetesRelease{"1.33": rel},
		TerraformProviders: map[string]config.TerraformProvider{"hashicorp/vsphere": {Version: "2.1.1",
			URL: u.files.URL + "/terraform-provider-vsphere_2.1.1_linux_amd64.zip", SHA256: sum("terraform-provider-vsphere_2.1.1_linux_amd64.zip")}}}
	return u
}

func (u *upstream) registry() Registry {
	return Registry{User: u.reg.User, Password: u.reg.Password, CACert: u.reg.CACert}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + n)
	}
	s := sha256.Sum256([]byte(t.Name()))
	copy(b, s[:])
	return b
}

func TestPullPushAndPullAgainFromTheMirror(t *testing.T) {
	ctx := context.Background()
	u := newUpstream(t)
	items, err := Plan(u.vm, []string{"1.33"}, "hashicorp/vsphere")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 7 {
		t.Fatalf("plan: %d items, want 3 images, 3 packages and a provider: %+v", len(items), items)
	}
	dir := filepath.Join(t.TempDir(), "bundle")
	res, err := Pull(ctx, dir, PullOptions{Items: items, Source: u.registry(), ChunkSize: 256 << 10, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	// Blobs are stored once: the shared base layers and the package file "tool" of two packages.
	if res.Stats.BlobsReused < 3 {
		t.Errorf("pull reused %d blobs, want at least 3 (two shared layers, one shared file)", res.Stats.BlobsReused)
	}
	if got := u.served.Load(); got != 670_000 {
		t.Errorf("the file server served %d bytes, want 670000 (each file once)", got)
	}
	// The provider plugin is an engine's filesystem mirror (packed layout) under both host names.
	provider := u.vm.TerraformProviders["hashicorp/vsphere"]
	for _, host := range []string{"registry.opentofu.org", "registry.terraform.io"} {
		p := filepath.Join(dir, TerraformPluginsDir, host, "hashicorp", "vsphere", "terraform-provider-vsphere_2.1.1_linux_amd64.zip")
		data, err := os.ReadFile(p)
		if sum := sha256.Sum256(data); err != nil || hex.EncodeToString(sum[:]) != provider.SHA256 {
			t.Errorf("%s: %v, or not the version map's sum", p, err)
		}
	}
	if len(res.Manifest.TerraformPlugins) != 2 {
		t.Errorf("manifest terraformPlugins: %+v", res.Manifest.TerraformPlugins)
	}
	for _, a := range res.Manifest.Archives {
		if len(a.Files) < 2 {
			t.Errorf("archive %s is in %d file(s), want chunks of at most 256 KiB", a.Name, len(a.Files))
		}
		for _, f := range a.Files {
			if f.Size > 256<<10 {
				t.Errorf("chunk %s has %d bytes", f.Name, f.Size)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, workDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the work dir is left in the bundle: %v", err)
	}
	for _, it := range res.Manifest.Items {
		if it.Kind == KindImage && it.Digest != u.images[it.Name].String() {
			t.Errorf("%s: bundle digest %s, upstream %s", it.Path, it.Digest, u.images[it.Name])
		}
	}

	b, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	mirror := u.reg.Host + "/mirror/dhctl"
	pr, err := Push(ctx, b, PushOptions{Repo: mirror, Registry: u.registry(), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Pushed != 7 || pr.Present != 0 {
		t.Errorf("push: %+v, want 7 pushed", pr)
	}
	// A package's files are blobs named by their upstream sha256, as the packages endpoint reads them.
	runtime := u.vm.Kubernetes["1.33"].Packages["runtime"]
	pkgRef, _ := name.NewDigest(mirror + "/packages/runtime@sha256:" + runtime.SHA256)
	if _, err := remote.Layer(pkgRef, remote.WithTransport(u.reg.Transport()), remote.WithAuth(&authn.Basic{Username: u.reg.User, Password: u.reg.Password})); err != nil {
		t.Errorf("package file blob: %v", err)
	}

	// Pushed again: everything is there already.
	pr, err = Push(ctx, b, PushOptions{Repo: mirror, Registry: u.registry(), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Pushed != 0 || pr.Present != 7 {
		t.Errorf("second push: %+v, want 7 already present", pr)
	}

	// The mirror is a source as good as upstream: the same items, the same digests.
	dir2 := filepath.Join(t.TempDir(), "again")
	res2, err := Pull(ctx, dir2, PullOptions{Items: items, SourceRepo: mirror, Source: u.registry(), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range res2.Manifest.Items {
		if it.Digest != res.Manifest.Items[i].Digest {
			t.Errorf("%s: %s from the mirror, %s from upstream", it.Path, it.Digest, res.Manifest.Items[i].Digest)
		}
	}
	if len(res2.Manifest.TerraformPlugins) != 2 {
		t.Errorf("the provider plugin pulled from the mirror is not laid out: %+v", res2.Manifest.TerraformPlugins)
	}
	if len(res2.Manifest.Archives[0].Files) != 1 || !strings.HasSuffix(res2.Manifest.Archives[0].Files[0].Name, ".tar") {
		t.Errorf("unchunked archive files: %+v", res2.Manifest.Archives[0].Files)
	}
}

func TestPullResumesWithoutFetchingFinishedBlobsAgain(t *testing.T) {
	u := newUpstream(t)
	items, err := Plan(u.vm, []string{"1.33"})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "bundle")
	// The first pull stops (as if killed) after 3 items.
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err = Pull(ctx, dir, PullOptions{Items: items, Source: u.registry(), Logf: func(f string, a ...any) {
		t.Logf(f, a...)
		if n++; n == 3 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted pull: %v, want context.Canceled", err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "not a bundle") {
		t.Fatalf("an interrupted pull must not look like a bundle: %v", err)
	}
	first := u.served.Load()
	res, err := Pull(context.Background(), dir, PullOptions{Items: items, Source: u.registry(), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	// Items 1-3 (the runtime package and the plugins package with its two files) were finished.
	if first != 550_000 {
		t.Errorf("the first pull fetched %d bytes of files, want 550000", first)
	}
	if again := u.served.Load() - first; again != 0 {
		t.Errorf("the re-run fetched %d bytes of package files again, want 0", again)
	}
	if res.Stats.BlobsReused == 0 {
		t.Errorf("the re-run reused no blob: %+v", res.Stats)
	}
	if len(res.Manifest.Items) != len(items) {
		t.Errorf("bundle has %d items, want %d", len(res.Manifest.Items), len(items))
	}
}

func TestPullRefusesAFileThatIsNotTheVersionMapsSum(t *testing.T) {
	u := newUpstream(t)
	rel := u.vm.Kubernetes["1.33"]
	p := rel.Packages["tool"]
	p.SHA256 = strings.Repeat("ab", 32)
	rel.Packages["tool"] = p
	items, err := Plan(u.vm, []string{"1.33"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Pull(context.Background(), t.TempDir(), PullOptions{Items: items, Source: u.registry()})
	if err == nil || !strings.Contains(err.Error(), "package tool file tool") || !strings.Contains(err.Error(), "hashes to sha256:") {
		t.Fatalf("pull of a file whose sum differs: %v", err)
	}
}

func TestPushDetectsACorruptedBlobAndNamesItsItem(t *testing.T) {
	ctx := context.Background()
	u := newUpstream(t)
	items, err := Plan(u.vm, []string{"1.33"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	res, err := Pull(ctx, dir, PullOptions{Items: items, Source: u.registry()})
	if err != nil {
		t.Fatal(err)
	}
	// Flip one byte inside the blob of kube-scheduler's own layer.
	b, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var victim Item
	for _, it := range res.Manifest.Items {
		if it.Name == "kube-scheduler" {
			victim = it
		}
	}
	img, err := b.Image(victim)
	if err != nil {
		t.Fatal(err)
	}
	mf, _ := img.Manifest()
	last := mf.Layers[len(mf.Layers)-1].Digest
	s := b.archives[ArchivePlatform].blobs[last.String()]
	b.Close()
	f, err := os.OpenFile(filepath.Join(dir, s.file), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	f.ReadAt(one, s.off+s.size/2)
	one[0] ^= 0xff
	f.WriteAt(one, s.off+s.size/2)
	f.Close()

	b, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = Push(ctx, b, PushOptions{Repo: u.reg.Host + "/corrupt", Registry: u.registry(), Logf: t.Logf})
	var corrupt *CorruptBlobError
	if !errors.As(err, &corrupt) || corrupt.Item != victim.Path || corrupt.Digest != last.String() {
		t.Fatalf("push of a corrupted bundle: %v, want a CorruptBlobError naming %s and %s", err, victim.Path, last)
	}
	if !strings.Contains(err.Error(), victim.Path) || !strings.Contains(err.Error(), "corrupted") {
		t.Errorf("the error does not name the item: %v", err)
	}
}

func TestPushChecksWriteAccessFirst(t *testing.T) {
	ctx := context.Background()
	u := newUpstream(t)
	b, _ := pulledBundle(t, u)
	reg := u.registry()
	reg.Password = "wrong-password"
	_, err := Push(ctx, b, PushOptions{Repo: u.reg.Host + "/denied", Registry: reg})
	if err == nil || !strings.Contains(err.Error(), "no write access to "+u.reg.Host+"/denied as mirror") {
		t.Fatalf("push with a wrong password: %v", err)
	}
	if strings.Contains(err.Error(), "wrong-password") {
		t.Errorf("the error shows the password: %v", err)
	}
}

func TestOpenNamesATruncatedChunk(t *testing.T) {
	ctx := context.Background()
	u := newUpstream(t)
	items, _ := Plan(u.vm, []string{"1.33"})
	dir := t.TempDir()
	res, err := Pull(ctx, dir, PullOptions{Items: items, Source: u.registry(), ChunkSize: 200_000})
	if err != nil {
		t.Fatal(err)
	}
	victim := res.Manifest.Archives[1].Files[1]
	if err := os.Truncate(filepath.Join(dir, victim.Name), victim.Size-10); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir)
	if err == nil || !strings.Contains(err.Error(), victim.Name) || !strings.Contains(err.Error(), "not copied whole") {
		t.Fatalf("open with a truncated chunk: %v", err)
	}
}

func TestPlanListsEveryImageAndPackageOfTheVersionMap(t *testing.T) {
	vm, err := config.LoadVersionMap(os.DirFS("../../candi"))
	if err != nil {
		t.Fatal(err)
	}
	items, err := Plan(vm, []string{vm.Default()})
	if err != nil {
		t.Fatal(err)
	}
	rel, _ := vm.Release(vm.Default())
	if len(items) != len(rel.Images)+len(rel.Packages) {
		t.Fatalf("%d items, want %d images + %d packages", len(items), len(rel.Images), len(rel.Packages))
	}
	got := map[string]bool{}
	for _, it := range items {
		got[it.Path] = true
	}
	for _, want := range []string{"kube-apiserver:v1.33.13", "etcd:3.5.24-0", "coredns:v1.12.0", "pause:3.10", "flannel:v0.26.7", "packages/kubelet:v1.33.13", "packages/containerd:1.7.28", "packages/cni-plugins:v1.7.1"} {
		if !got[want] {
			t.Errorf("plan lacks %s: %v", want, got)
		}
	}
	if _, err := Plan(vm, []string{"1.20"}); err == nil || !strings.Contains(err.Error(), "supported: ") {
		t.Errorf("an unsupported version: %v", err)
	}
}

func TestPackageTag(t *testing.T) {
	for in, want := range map[string]string{"1.6.20~ds1-1+deb12u3": "1.6.20_ds1-1_deb12u3", "v1.33.13": "v1.33.13", "1:2.3": "1_2.3"} {
		if got := PackageTag(in); got != want {
			t.Errorf("PackageTag(%q) = %q, want %q", in, got, want)
		}
	}
}

func mutateAppend(base v1.Image, l v1.Layer) (v1.Image, error) { return mutate.AppendLayers(base, l) }

func TestPackageManifest(t *testing.T) {
	deb := PackageLayer{Name: "runc_1.1.5+ds1-1+deb12u1_amd64.deb", Hash: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}, Size: 3}
	bin := PackageLayer{Name: "kubelet", Hash: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("b", 64)}, Size: 5}
	raw, cfg, err := PackageManifest("mixed", "1.1.5+ds1-1+deb12u1", []PackageLayer{deb, bin})
	if err != nil {
		t.Fatal(err)
	}
	mf, err := v1.ParseManifest(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if mf.Config.MediaType != PackageConfigMediaType || mf.Annotations[VersionAnnotation] != "1.1.5+ds1-1+deb12u1" {
		t.Errorf("manifest config %v annotations %v", mf.Config, mf.Annotations)
	}
	if len(mf.Layers) != 2 || mf.Layers[0].MediaType != DebMediaType || mf.Layers[1].MediaType != FileMediaType ||
		mf.Layers[0].Annotations[TitleAnnotation] != deb.Name || mf.Layers[1].Annotations[TitleAnnotation] != "kubelet" || mf.Layers[1].Digest != bin.Hash {
		t.Errorf("layers %+v", mf.Layers)
	}
	if h, n, _ := v1.SHA256(strings.NewReader(string(cfg))); h != mf.Config.Digest || n != mf.Config.Size {
		t.Errorf("config %s is %v (%d bytes), the manifest says %v", cfg, h, n, mf.Config)
	}
	if _, _, err := PackageManifest("bad", "1", []PackageLayer{{Name: "../x"}}); err == nil {
		t.Error("a file name with a path was accepted")
	}
}

func TestSizesListsWithoutFetching(t *testing.T) {
	u := newUpstream(t)
	items, err := Plan(u.vm, []string{"1.33"}, "hashicorp/vsphere")
	if err != nil {
		t.Fatal(err)
	}
	sized, err := Sizes(context.Background(), PullOptions{Items: items, Source: u.registry()})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range sized {
		switch it.Name {
		case "plugins":
			if it.Size != 350_000 {
				t.Errorf("%s: size %d, want the files' 350000", it.Path, it.Size)
			}
		case "kube-apiserver":
			if it.Size < 550_000 {
				t.Errorf("%s: size %d, want manifest + config + layers (> 550000)", it.Path, it.Size)
			}
		}
	}
	if got := u.served.Load(); got != 0 {
		t.Errorf("listing fetched %d bytes of package files, want 0", got)
	}
}

// A registry that fails an item's manifest upload more often than the client library retries:
// the push retries the item and succeeds, over plain HTTP (--insecure) through a proxy.
func TestPushRetriesAFailedItem(t *testing.T) {
	ctx := context.Background()
	u := newUpstream(t)
	b, items := pulledBundle(t, u)
	target, _ := url.Parse("https://" + u.reg.Host)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = u.reg.Transport()
	var failures atomic.Int32
	var srv *httptest.Server
	// The registry names upload locations with its own address: point them at the proxy.
	proxy.ModifyResponse = func(r *http.Response) error {
		if loc := r.Header.Get("Location"); loc != "" {
			r.Header.Set("Location", strings.Replace(loc, "https://"+u.reg.Host, srv.URL, 1))
		}
		return nil
	}
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") && strings.Contains(r.URL.Path, "pause") && failures.Add(1) <= 5 {
			http.Error(w, "injected failure", http.StatusServiceUnavailable)
			return
		}
		r.Host = target.Host
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	var log strings.Builder
	res, err := Push(ctx, b, PushOptions{Repo: host + "/retried", Registry: Registry{User: u.reg.User, Password: u.reg.Password, Insecure: true},
		Logf: func(f string, a ...any) { fmt.Fprintf(&log, f+"\n", a...) }})
	if err != nil {
		t.Fatalf("push: %v\n%s", err, log.String())
	}
	if res.Pushed != len(items) || !strings.Contains(log.String(), "pause:v1: attempt 1 of 3 failed, retrying") {
		t.Errorf("push %+v; log:\n%s", res, log.String())
	}
	// Without the item's retries the same registry fails the push, naming the item.
	failures.Store(0)
	_, err = Push(ctx, b, PushOptions{Repo: host + "/once", Attempts: 1, Registry: Registry{User: u.reg.User, Password: u.reg.Password, Insecure: true}})
	if err == nil || !strings.Contains(err.Error(), "pushing pause:v1 (image)") {
		t.Errorf("push with one attempt: %v", err)
	}
}

// pulledBundle pulls the upstream's Kubernetes items into a bundle and opens it.
func pulledBundle(t *testing.T, u *upstream) (*Bundle, []Item) {
	t.Helper()
	items, err := Plan(u.vm, []string{"1.33"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := Pull(context.Background(), dir, PullOptions{Items: items, Source: u.registry()}); err != nil {
		t.Fatal(err)
	}
	b, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, items
}

func TestInstallerItemOnlyForAReleasedVersion(t *testing.T) {
	vm := &config.VersionMap{Installer: &config.InstallerImage{Repository: "ghcr.io/dhctl-dev/installer"}}
	it, ok := InstallerItem(vm, "v1.2.3")
	if !ok || it.Path != "installer:v1.2.3" || it.Upstream != "ghcr.io/dhctl-dev/installer:v1.2.3" || it.Kind != KindImage {
		t.Errorf("InstallerItem(v1.2.3) = %+v, %v", it, ok)
	}
	for _, v := range []string{"devel", "", "v1.2.3-4-gabc-dirty"} {
		if _, ok := InstallerItem(vm, v); ok {
			t.Errorf("InstallerItem(%q) names an image: a development build has none", v)
		}
	}
	if _, ok := InstallerItem(&config.VersionMap{}, "v1.2.3"); ok {
		t.Error("InstallerItem without the version map's entry names an image")
	}
}

// On a terminal the push shows the current item's progress in place; the lines per item and the
// summary go to the log as they do without one.
func TestPushProgressBar(t *testing.T) {
	u := newUpstream(t)
	b, items := pulledBundle(t, u)
	var bar, log strings.Builder
	if _, err := Push(context.Background(), b, PushOptions{Repo: u.reg.Host + "/bar", Registry: u.registry(), Bar: &bar,
		Logf: func(f string, a ...any) { fmt.Fprintf(&log, f+"\n", a...) }}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(bar.String(), "\r[1/"+strconv.Itoa(len(items))+"] ") || !strings.Contains(bar.String(), "[########################]") || !strings.Contains(bar.String(), "\r\033[K") {
		t.Errorf("progress bar output: %q", bar.String())
	}
	if !strings.Contains(log.String(), "all "+strconv.Itoa(len(items))+" verified") {
		t.Errorf("summary: %s", log.String())
	}
}

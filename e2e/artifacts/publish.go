package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/images"
	"github.com/dhctl-dev/dhctl/e2e/internal/cache"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/mirror"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The registry layout (docs/registry-layout.md): images at
// <imagesRepo>/<name>:<tag>, node packages at <imagesRepo>/packages/<name>:<tag>.

// ImageRef is where the layout puts image name at tag.
func ImageRef(imagesRepo, name, tag string) string {
	return strings.TrimSuffix(imagesRepo, "/") + "/" + name + ":" + tag
}

// PackageRef is where the layout puts node package name at version.
func PackageRef(imagesRepo, name, version string) string {
	return strings.TrimSuffix(imagesRepo, "/") + "/" + mirror.PackagePath(name, version)
}

// imageSpec describes one image of the layout.
type imageSpec struct {
	name, tag  string
	components []string
	// binaries: binary name -> path inside the image.
	binaries   map[string]string
	entrypoint []string
	userland   bool // iptables, conntrack and libc, for kube-proxy and flannel
	busybox    bool // sh, cp, ... for flannel's init steps
	extra      []images.File
}

func imageSpecs() []imageSpec {
	kube := func(name string) imageSpec {
		return imageSpec{name: name, tag: KubernetesVersion, components: []string{Kubernetes},
			binaries: map[string]string{name: "/usr/local/bin/" + name}, entrypoint: []string{"/usr/local/bin/" + name}}
	}
	proxy := kube("kube-proxy")
	proxy.userland = true
	return []imageSpec{
		kube("kube-apiserver"), kube("kube-controller-manager"), kube("kube-scheduler"), proxy,
		{name: "etcd", tag: EtcdImageTag, components: []string{Etcd},
			binaries: map[string]string{"etcd": "/usr/local/bin/etcd"}, entrypoint: []string{"/usr/local/bin/etcd"}},
		{name: "coredns", tag: CoreDNSVersion, components: []string{CoreDNS},
			binaries: map[string]string{"coredns": "/coredns"}, entrypoint: []string{"/coredns"}},
		{name: "pause", tag: PauseImageTag, components: []string{Pause},
			binaries: map[string]string{"pause": "/pause"}, entrypoint: []string{"/pause"}},
		{name: "flannel", tag: FlannelVersion, components: []string{Flannel},
			binaries: map[string]string{"flanneld": "/opt/bin/flanneld"}, entrypoint: []string{"/opt/bin/flanneld"},
			userland: true, busybox: true},
		// Laid out as Deckhouse's image is: the controller at /usr/bin/deckhouse-controller, its
		// version in /deckhouse/version, its modules under /deckhouse/modules, and a shell for
		// the init container the Deployment runs from the same image.
		{name: "platform-controller", tag: PlatformControllerVersion, components: []string{PlatformController},
			binaries: map[string]string{"platform-controller": "/usr/bin/deckhouse-controller"}, entrypoint: []string{"/usr/bin/deckhouse-controller"},
			busybox: true, extra: []images.File{
				{Path: "/deckhouse/version", Data: []byte(PlatformControllerVersion + "\n"), Mode: 0o644},
				{Path: "/deckhouse/modules/README", Data: []byte("The stand-in controller has no modules of its own.\n"), Mode: 0o644},
			}},
	}
}

// packageSpec describes one node package of the layout.
type packageSpec struct {
	name, version string
	components    []string
	binaries      []string // built binaries shipped as files
	deb           *Deb     // or one Debian package
}

func packageSpecs() []packageSpec {
	return []packageSpec{
		{name: "kubelet", version: KubernetesVersion, components: []string{Kubernetes}, binaries: []string{"kubelet"}},
		{name: "kubeadm", version: KubernetesVersion, components: []string{Kubernetes}, binaries: []string{"kubeadm"}},
		{name: "kubectl", version: KubernetesVersion, components: []string{Kubernetes}, binaries: []string{"kubectl"}},
		{name: "containerd", version: ContainerdVersion, deb: &Deb{"containerd", ContainerdVersion}},
		{name: "runc", version: RuncVersion, deb: &Deb{"runc", RuncVersion}},
		{name: "crictl", version: CRIToolsVersion, components: []string{CRITools}, binaries: []string{"crictl"}},
		// "flannel" is e2e/cni-flannel: it delegates to bridge + host-local
		// with the subnet flanneld leased to the node.
		{name: "cni-plugins", version: CNIPluginsVersion, components: []string{CNIPlugins, CNIFlannel}, binaries: []string{"bridge", "host-local", "loopback", "portmap", "flannel"}},
	}
}

// ImageNames and PackageNames list everything the layout holds.
func ImageNames() []string {
	var n []string
	for _, s := range imageSpecs() {
		n = append(n, s.name)
	}
	return n
}

// PackageNames lists the node packages of the layout.
func PackageNames() []string {
	var n []string
	for _, s := range packageSpecs() {
		n = append(n, s.name)
	}
	return n
}

// Selection picks what to publish; the zero value means everything.
type Selection struct {
	Images   []string
	Packages []string
}

// Pushed is one published image or package.
type Pushed struct {
	Ref    string  // <imagesRepo>/...:<tag>
	Digest v1.Hash // manifest digest
	// Files maps each file of a package to its sha256 (empty for images).
	Files map[string]string
}

// Published is what Publish pushed, by image or package name.
type Published struct {
	Images   map[string]Pushed
	Packages map[string]Pushed
}

// Publish pushes what sel names (everything when empty) under imagesRepo (host[:port]/path) to
// dst with the product's code: the rig's artifacts are built (or reused) into a bundle, written
// by dhctl's mirror writer and cached, and pushed by dhctl mirror push's function.
func Publish(ctx context.Context, opts Options, dst images.Registry, imagesRepo string, sel Selection) (*Published, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	all := len(sel.Images) == 0 && len(sel.Packages) == 0
	wantImage, wantPackage := setOf(sel.Images), setOf(sel.Packages)
	var only []string
	for _, s := range imageSpecs() {
		if all || wantImage[s.name] {
			only = append(only, s.name+":"+s.tag)
			delete(wantImage, s.name)
		}
	}
	for _, s := range packageSpecs() {
		if all || wantPackage[s.name] {
			only = append(only, mirror.PackagePath(s.name, s.version))
			delete(wantPackage, s.name)
		}
	}
	if len(wantImage)+len(wantPackage) > 0 {
		return nil, fmt.Errorf("artifacts: unknown images %v or packages %v; the layout has images %v and packages %v",
			sortedKeys(wantImage), sortedKeys(wantPackage), ImageNames(), PackageNames())
	}
	dir, err := WriteBundle(ctx, opts)
	if err != nil {
		return nil, err
	}
	b, err := mirror.Open(dir)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	start := time.Now()
	res, err := mirror.Push(ctx, b, mirror.PushOptions{Repo: imagesRepo, Only: only,
		Registry: mirror.Registry{Transport: dst.Transport, User: dst.User, Password: dst.Password}})
	if err != nil {
		return nil, err
	}
	out := &Published{Images: map[string]Pushed{}, Packages: map[string]Pushed{}}
	selected := setOf(only)
	for _, it := range b.Manifest.Items {
		if !selected[it.Path] {
			continue
		}
		d, err := v1.NewHash(it.Digest)
		if err != nil {
			return nil, err
		}
		p := Pushed{Ref: it.Ref(imagesRepo), Digest: d}
		if it.Kind == mirror.KindImage {
			out.Images[it.Name] = p
			continue
		}
		p.Files = map[string]string{}
		for _, f := range it.Files {
			p.Files[f.Name] = f.SHA256
		}
		out.Packages[it.Name] = p
	}
	opts.Logf("artifacts: pushed %d image(s) and %d package(s) to %s with dhctl mirror push's code in %v (%d already there)",
		len(out.Images), len(out.Packages), imagesRepo, time.Since(start).Round(time.Millisecond), res.Present)
	return out, nil
}

// WriteBundle builds (or reuses) every image and package of the layout and returns the
// directory of a bundle holding them, written by dhctl's mirror writer: what `dhctl mirror pull`
// would make from upstream, but with the rig's own builds. Bundles are cached by their content.
func WriteBundle(ctx context.Context, opts Options) (string, error) {
	if err := opts.defaults(); err != nil {
		return "", err
	}
	need := map[string]bool{}
	for _, s := range imageSpecs() {
		for _, c := range s.components {
			need[c] = true
		}
	}
	for _, s := range packageSpecs() {
		for _, c := range s.components {
			need[c] = true
		}
	}
	bins, err := Build(ctx, opts, sortedKeys(need)...)
	if err != nil {
		return "", err
	}
	type imageItem struct {
		it  mirror.Item
		img v1.Image
	}
	var imgs []imageItem
	key := sha256.New()
	for _, s := range imageSpecs() {
		img, err := packImage(ctx, opts, opts.CacheDir, s, bins)
		if err != nil {
			return "", err
		}
		d, err := img.Digest()
		if err != nil {
			return "", err
		}
		it := mirror.Item{Kind: mirror.KindImage, Name: s.name, Path: s.name + ":" + s.tag, Archive: mirror.ArchivePlatform}
		fmt.Fprintf(key, "%s %s\n", it.Path, d)
		imgs = append(imgs, imageItem{it, img})
	}
	var pkgs []mirror.Item
	local := map[string]string{} // sha256 -> file
	for _, s := range packageSpecs() {
		type file struct{ name, source string }
		var files []file
		for _, b := range s.binaries {
			files = append(files, file{b, bins[b]})
		}
		if s.deb != nil {
			debs, err := FetchDebs(ctx, opts, *s.deb)
			if err != nil {
				return "", err
			}
			p := debs[s.deb.Name]
			files = append(files, file{path.Base(p), p})
		}
		it := mirror.Item{Kind: mirror.KindPackage, Name: s.name, Path: mirror.PackagePath(s.name, s.version), Archive: mirror.ArchivePackages, Version: s.version}
		for _, f := range files {
			sum, err := fileSHA256(f.source)
			if err != nil {
				return "", err
			}
			local[sum] = f.source
			it.Files = append(it.Files, config.PackageFile{Name: f.name, SHA256: sum})
			fmt.Fprintf(key, "%s %s %s\n", it.Path, f.name, sum)
		}
		pkgs = append(pkgs, it)
	}
	name := "bundle-" + hex.EncodeToString(key.Sum(nil))[:16]
	dir := filepath.Join(opts.CacheDir, "bundles", name)
	err = cache.WithLock(ctx, filepath.Join(opts.CacheDir, "bundles", "lock"), func() error {
		if _, err := os.Stat(filepath.Join(dir, mirror.ManifestFile)); err == nil {
			return nil
		}
		start := time.Now()
		w, err := mirror.NewWriter(dir)
		if err != nil {
			return err
		}
		defer w.Close()
		var items []mirror.Item
		for _, ii := range imgs {
			if _, err := w.AddImage(ctx, ii.it, ii.img); err != nil {
				return err
			}
			items = append(items, ii.it)
		}
		for _, it := range pkgs {
			if _, err := w.AddPackage(ctx, it, func(_ context.Context, f mirror.PackageFileRef) (io.ReadCloser, error) {
				return os.Open(local[f.SHA256])
			}); err != nil {
				return err
			}
			items = append(items, it)
		}
		m, err := w.Finish(ctx, items, 0)
		if err != nil {
			return err
		}
		opts.Logf("artifacts: wrote the rig's bundle %s (%d items, %s) in %v", dir, len(m.Items), mirror.HumanBytes(m.Size()), time.Since(start).Round(time.Millisecond))
		// Bundles of earlier builds are of no more use.
		old, _ := filepath.Glob(filepath.Join(opts.CacheDir, "bundles", "bundle-*"))
		for _, o := range old {
			if o != dir {
				os.RemoveAll(o)
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("artifacts: the rig's bundle: %w", err)
	}
	return dir, nil
}

func packImage(ctx context.Context, opts Options, layerDir string, s imageSpec, bins Binaries) (v1.Image, error) {
	var layers []v1.Layer
	if s.userland {
		l, err := userlandLayer(ctx, opts, layerDir)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	if s.busybox {
		l, err := busyboxLayer(ctx, opts, layerDir)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	var files []images.File
	for _, b := range sortedKeys(s.binaries) {
		src, ok := bins[b]
		if !ok {
			return nil, fmt.Errorf("artifacts: image %s: binary %s was not built", s.name, b)
		}
		files = append(files, images.File{Path: s.binaries[b], Source: src, Mode: 0o755})
	}
	files = append(files, s.extra...)
	l, err := images.LayerFromFiles(layerDir, files)
	if err != nil {
		return nil, fmt.Errorf("artifacts: image %s: %w", s.name, err)
	}
	layers = append(layers, l)
	return images.Image(layers, images.Config{Entrypoint: s.entrypoint})
}

// userlandLayer holds iptables (nft backend, as on the Debian 12 nodes),
// conntrack and the C library.
func userlandLayer(ctx context.Context, opts Options, layerDir string) (v1.Layer, error) {
	debs, err := FetchDebs(ctx, opts, userlandDebs...)
	if err != nil {
		return nil, err
	}
	dir, err := unpackDebs(ctx, opts, "userland-"+debsKey(userlandDebs), debs)
	if err != nil {
		return nil, err
	}
	files, err := images.TreeFiles(dir+"/root", "/")
	if err != nil {
		return nil, err
	}
	// update-alternatives never ran: make the plain names point at the nft
	// variants, as Debian 12 does by default.
	for _, t := range []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"} {
		files = append(files, images.File{Path: "/usr/sbin/" + t, Link: strings.Replace(t, "tables", "tables-nft", 1)})
	}
	return images.LayerFromFiles(layerDir, files)
}

// busyboxApplets are the commands flannel's manifests, the platform's init container and
// debugging need.
var busyboxApplets = []string{"sh", "cp", "mv", "rm", "ln", "ls", "cat", "mkdir", "echo", "sleep", "test", "[", "grep", "sed", "chmod", "chown", "env"}

func busyboxLayer(ctx context.Context, opts Options, layerDir string) (v1.Layer, error) {
	debs, err := FetchDebs(ctx, opts, busyboxDeb)
	if err != nil {
		return nil, err
	}
	dir, err := unpackDebs(ctx, opts, "busybox-"+debsKey([]Deb{busyboxDeb}), debs)
	if err != nil {
		return nil, err
	}
	files := []images.File{{Path: "/bin/busybox", Source: dir + "/root/bin/busybox", Mode: 0o755}}
	for _, a := range busyboxApplets {
		files = append(files, images.File{Path: "/bin/" + a, Link: "busybox"})
	}
	return images.LayerFromFiles(layerDir, files)
}

func debsKey(debs []Deb) string {
	h := sha256.New()
	for _, d := range debs {
		fmt.Fprintf(h, "%s=%s\n", d.Name, d.Version)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func setOf(s []string) map[string]bool {
	m := map[string]bool{}
	for _, x := range s {
		m[x] = true
	}
	return m
}

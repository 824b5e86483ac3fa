package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/images"
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
	return strings.TrimSuffix(imagesRepo, "/") + "/packages/" + name + ":" + images.PackageTag(version)
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

// Publish builds (or reuses) what sel needs, packs it and pushes it under
// imagesRepo (host[:port]/path) to dst.
func Publish(ctx context.Context, opts Options, dst images.Registry, imagesRepo string, sel Selection) (*Published, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	all := len(sel.Images) == 0 && len(sel.Packages) == 0
	wantImage, wantPackage := setOf(sel.Images), setOf(sel.Packages)
	var imgs []imageSpec
	var pkgs []packageSpec
	need := map[string]bool{}
	for _, s := range imageSpecs() {
		if all || wantImage[s.name] {
			imgs = append(imgs, s)
			delete(wantImage, s.name)
			for _, c := range s.components {
				need[c] = true
			}
		}
	}
	for _, s := range packageSpecs() {
		if all || wantPackage[s.name] {
			pkgs = append(pkgs, s)
			delete(wantPackage, s.name)
			for _, c := range s.components {
				need[c] = true
			}
		}
	}
	if len(wantImage)+len(wantPackage) > 0 {
		return nil, fmt.Errorf("artifacts: unknown images %v or packages %v; the layout has images %v and packages %v",
			sortedKeys(wantImage), sortedKeys(wantPackage), ImageNames(), PackageNames())
	}
	var bins Binaries
	if len(need) > 0 {
		var err error
		if bins, err = Build(ctx, opts, sortedKeys(need)...); err != nil {
			return nil, err
		}
	}
	layerDir := opts.CacheDir
	out := &Published{Images: map[string]Pushed{}, Packages: map[string]Pushed{}}
	start := time.Now()
	var packing, pushing time.Duration
	for _, s := range imgs {
		t0 := time.Now()
		img, err := packImage(ctx, opts, layerDir, s, bins)
		if err != nil {
			return nil, err
		}
		t1 := time.Now()
		packing += t1.Sub(t0)
		ref := ImageRef(imagesRepo, s.name, s.tag)
		d, err := images.Push(ctx, ref, img, dst)
		if err != nil {
			return nil, err
		}
		pushing += time.Since(t1)
		out.Images[s.name] = Pushed{Ref: ref, Digest: d}
	}
	for _, s := range pkgs {
		var files []images.PackageFile
		for _, b := range s.binaries {
			files = append(files, images.PackageFile{Name: b, Source: bins[b]})
		}
		if s.deb != nil {
			debs, err := FetchDebs(ctx, opts, *s.deb)
			if err != nil {
				return nil, err
			}
			p := debs[s.deb.Name]
			files = append(files, images.PackageFile{Name: path.Base(p), Source: p})
		}
		sums := map[string]string{}
		for _, f := range files {
			sum, err := fileSHA256(f.Source)
			if err != nil {
				return nil, err
			}
			sums[f.Name] = sum
		}
		art, err := images.Package(s.name, s.version, files)
		if err != nil {
			return nil, err
		}
		ref := PackageRef(imagesRepo, s.name, s.version)
		d, err := images.Push(ctx, ref, art, dst)
		if err != nil {
			return nil, err
		}
		out.Packages[s.name] = Pushed{Ref: ref, Digest: d, Files: sums}
	}
	opts.Logf("artifacts: pushed %d image(s) and %d package(s) to %s in %v (images: packing %v, pushing %v)", len(out.Images), len(out.Packages), imagesRepo,
		time.Since(start).Round(time.Millisecond), packing.Round(time.Millisecond), pushing.Round(time.Millisecond))
	return out, nil
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

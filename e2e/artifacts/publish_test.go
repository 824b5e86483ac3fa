package artifacts

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/images"
	"github.com/dhctl-dev/dhctl/e2e/internal/testctx"
	"github.com/dhctl-dev/dhctl/e2e/rig"
	"github.com/dhctl-dev/dhctl/internal/mirror"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestRefs(t *testing.T) {
	if got := ImageRef("reg.example:5000/dhctl/", "pause", "3.10"); got != "reg.example:5000/dhctl/pause:3.10" {
		t.Errorf("ImageRef = %q", got)
	}
	if got := PackageRef("reg.example/dhctl", "containerd", "1.6.20~ds1-1+deb12u3"); got != "reg.example/dhctl/packages/containerd:1.6.20_ds1-1_deb12u3" {
		t.Errorf("PackageRef = %q", got)
	}
	if got := PackageRef("r", "conntrack", "1:1.4.7-1+b2"); got != "r/packages/conntrack:1_1.4.7-1_b2" {
		t.Errorf("PackageRef with epoch = %q", got)
	}
}

func TestBuildRejectsUnknownComponent(t *testing.T) {
	_, err := Build(context.Background(), Options{}, "kubernetes-dashboard")
	if err == nil || !strings.Contains(err.Error(), `"kubernetes-dashboard"`) {
		t.Fatalf("Build(unknown) error %v, want one naming the component", err)
	}
}

// TestPublishEverything builds (cold: tens of minutes, warm: seconds) and
// pushes every image and package of the layout to a rig registry, then checks
// them with go-containerregistry and, independently, skopeo.
func TestPublishEverything(t *testing.T) {
	ctx, cancel := testctx.New(t, 80*time.Minute)
	defer cancel()
	r, err := rig.New(ctx, rig.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("rig Close: %v", err)
		}
	})
	reg, err := r.StartRegistry(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dst := images.Registry{Transport: reg.Transport(), User: reg.User, Password: reg.Password}
	repo := reg.Host + "/dhctl"
	opts := Options{Logf: t.Logf}
	start := time.Now()
	bins, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Build (all components) took %v", time.Since(start))
	start = time.Now()
	pub, err := Publish(ctx, opts, dst, repo, Selection{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Publish (everything) took %v", time.Since(start))
	if len(pub.Images) != len(ImageNames()) || len(pub.Packages) != len(PackageNames()) {
		t.Fatalf("published %d images and %d packages, want %d and %d", len(pub.Images), len(pub.Packages), len(ImageNames()), len(PackageNames()))
	}

	// The binaries are the pinned versions.
	versions := map[string][]string{
		"kube-apiserver": {"--version"}, "kubelet": {"--version"}, "kubeadm": {"version", "-o", "short"},
		"kubectl": {"version", "--client"}, "etcd": {"--version"}, "coredns": {"-version"}, "flanneld": {"--version"},
		"crictl": {"--version"},
	}
	want := map[string]string{
		"kube-apiserver": KubernetesVersion, "kubelet": KubernetesVersion, "kubeadm": KubernetesVersion,
		"kubectl": KubernetesVersion, "etcd": strings.TrimPrefix(EtcdVersion, "v"), "coredns": strings.TrimPrefix(CoreDNSVersion, "v"),
		"flanneld": FlannelVersion, "crictl": CRIToolsVersion,
	}
	for bin, args := range versions {
		out, err := exec.CommandContext(ctx, bins[bin], args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), want[bin]) {
			t.Errorf("%s %v: %q %v; want it to report %s", bin, args, out, err, want[bin])
		}
	}

	// Every image holds its entrypoint; kube-proxy's and flannel's userland runs.
	for imgName, p := range pub.Images {
		ref, err := name.ParseReference(p.Ref)
		if err != nil {
			t.Fatal(err)
		}
		img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithTransport(dst.Transport), remote.WithAuth(basic(reg)))
		if err != nil {
			t.Fatalf("%s: %v", p.Ref, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if len(cf.Config.Entrypoint) == 0 || !strings.HasPrefix(strings.Join(cf.Config.Env, " "), "PATH=") {
			t.Errorf("%s: entrypoint %v env %v", p.Ref, cf.Config.Entrypoint, cf.Config.Env)
			continue
		}
		root := filepath.Join(t.TempDir(), imgName)
		if err := untar(ctx, mutate.Extract(img), root); err != nil {
			t.Fatalf("%s: %v", p.Ref, err)
		}
		if st, err := os.Stat(filepath.Join(root, cf.Config.Entrypoint[0])); err != nil || st.Mode()&0o111 == 0 {
			t.Errorf("%s: entrypoint %s missing or not executable: %v", p.Ref, cf.Config.Entrypoint[0], err)
		}
		if imgName == "kube-proxy" || imgName == "flannel" {
			for _, cmd := range [][]string{{"iptables", "--version"}, {"iptables-save", "--version"}, {"conntrack", "--version"}} {
				out, err := exec.CommandContext(ctx, "chroot", append([]string{root}, cmd...)...).CombinedOutput()
				if err != nil {
					t.Errorf("%s: %v in the image: %v\n%s", p.Ref, cmd, err, out)
				}
			}
		}
		if imgName == "flannel" {
			if out, err := exec.CommandContext(ctx, "chroot", root, "sh", "-c", "cp /opt/bin/flanneld /opt/bin/copy && echo ok").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "ok" {
				t.Errorf("%s: sh/cp in the image: %q %v", p.Ref, out, err)
			}
		}
	}

	// An independent client sees the package artifacts as the layout says.
	if _, err := exec.LookPath("skopeo"); err != nil {
		if out, err := exec.CommandContext(ctx, "apt-get", "install", "-y", "-q", "skopeo").CombinedOutput(); err != nil {
			t.Fatalf("installing skopeo: %v\n%s", err, out)
		}
	}
	certDir := filepath.Dir(reg.CAFile)
	for pkgName, p := range pub.Packages {
		out, err := exec.CommandContext(ctx, "nsenter", "--net="+r.NetNS(), "skopeo", "inspect", "--raw",
			"--cert-dir", certDir, "--creds", reg.User+":"+reg.Password, "docker://"+p.Ref).CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo inspect %s: %v\n%s", p.Ref, err, strings.ReplaceAll(string(out), reg.Password, "***"))
		}
		if !strings.Contains(string(out), string(mirror.PackageConfigMediaType)) || !strings.Contains(string(out), mirror.TitleAnnotation) {
			t.Errorf("%s (%s) manifest lacks the package media type or titles:\n%s", pkgName, p.Ref, out)
		}
		if len(p.Files) == 0 {
			t.Errorf("%s: no files recorded", pkgName)
		}
	}
}

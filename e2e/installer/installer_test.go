// Package installer_test builds the installer image as `make image` does, unpacks it, and runs
// dhctl from inside it as its non-root user: version, config validate, the engine's init of the
// vSphere layout with no network at all, and a full bootstrap of rig machines.
package installer_test

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/dhctl-dev/dhctl/e2e/artifacts"
	"github.com/dhctl-dev/dhctl/e2e/internal/lab"
	"github.com/dhctl-dev/dhctl/e2e/internal/rigtest"
	"github.com/dhctl-dev/dhctl/internal/installerimage"
	"github.com/dhctl-dev/dhctl/internal/mirror"
)

// image is a built, unpacked installer image.
type image struct {
	rootfs string
	env    []string
	inputs installerimage.Options
}

func buildImage(ctx context.Context, t *testing.T) *image {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "dhctl")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=v0.0.0-test", "-o", bin, "../../cmd/dhctl")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	in, err := artifacts.InstallerInputs(ctx, artifacts.Options{Logf: t.Logf}, bin, "v0.0.0-test")
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "bundle")
	start := time.Now()
	m, err := installerimage.WriteBundle(ctx, bundle, in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := mirror.Open(bundle)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	img, err := b.Image(m.Items[0])
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	var compressed int64
	for _, l := range layers {
		n, _ := l.Size()
		compressed += n
	}
	t.Logf("FIGURE installer image %s: %d layers, %s compressed (goal < 250 MB), built in %v", m.Items[0].Path, len(layers), mirror.HumanBytes(compressed), time.Since(start).Round(100*time.Millisecond))
	if compressed > 250e6 {
		t.Errorf("the image is %d bytes compressed, over the 250 MB goal", compressed)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532:65532" || strings.Join(cfg.Config.Entrypoint, " ") != "/usr/local/bin/dhctl" {
		t.Errorf("image config: user %q, entrypoint %v", cfg.Config.User, cfg.Config.Entrypoint)
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := unpack(mutate.Extract(img), rootfs); err != nil {
		t.Fatal(err)
	}
	// What a container runtime provides: /proc and /dev.
	for _, m := range []struct{ what, fstype, src string }{{"proc", "proc", "proc"}, {"dev", "", "/dev"}} {
		target := filepath.Join(rootfs, m.what)
		if err := os.MkdirAll(target, 0o755); err != nil {
			t.Fatal(err)
		}
		flags := uintptr(0)
		if m.fstype == "" {
			flags = syscall.MS_BIND
		}
		if err := syscall.Mount(m.src, target, m.fstype, flags, ""); err != nil {
			t.Fatalf("mount %s: %v", target, err)
		}
		t.Cleanup(func() { syscall.Unmount(target, syscall.MNT_DETACH) })
	}
	return &image{rootfs: rootfs, env: cfg.Config.Env, inputs: in}
}

// command runs args inside the image as its user, in the network namespace netns (a new, empty
// one when "").
func (im *image) command(ctx context.Context, netns string, args ...string) *exec.Cmd {
	inner := append([]string{"chroot", "--userspec=65532:65532", im.rootfs, "/bin/env", "-i"}, im.env...)
	inner = append(inner, args...)
	var cmd *exec.Cmd
	if netns == "" {
		cmd = exec.CommandContext(ctx, "unshare", append([]string{"--net"}, inner...)...)
	} else {
		cmd = exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + netns}, inner...)...)
	}
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// put copies a host file into the image's home, owned by its user.
func (im *image) put(t *testing.T, src, rel string, mode os.FileMode) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(im.rootfs, installerimage.Home, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		t.Fatal(err)
	}
	for p := dst; p != filepath.Join(im.rootfs, installerimage.Home); p = filepath.Dir(p) {
		os.Chown(p, installerimage.UID, installerimage.UID)
	}
	return filepath.Join(installerimage.Home, rel)
}

func TestInstallerImage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	im := buildImage(ctx, t)

	// Inside, dhctl finds its engine and the provider plugins beside itself, with no flag.
	out, code, _ := rigtest.Run(t, im.command(ctx, "", "dhctl", "version", "--verbose"))
	for _, want := range []string{"dhctl v0.0.0-test", "infrastructure engine: OpenTofu 1.10.6 (/opt/dhctl/tofu, beside dhctl)",
		"provider plugins: /opt/dhctl/plugins (beside dhctl):", "registry.opentofu.org/hashicorp/vsphere 1.26.0 linux_amd64 (unpacked)"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("dhctl version --verbose in the image (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
	if out, code, _ = rigtest.Run(t, im.command(ctx, "", "/bin/id")); code != 0 || !strings.Contains(out, "uid=65532(dhctl)") {
		t.Errorf("the image's user: exit %d %s", code, out)
	}

	cfg := im.put(t, "../../examples/static-cluster.yml", "static-cluster.yml", 0o600)
	if out, code, _ = rigtest.Run(t, im.command(ctx, "", "dhctl", "config", "validate", "--config", cfg)); code != 0 {
		t.Errorf("dhctl config validate in the image: exit %d\n%s", code, out)
	}

	// The engine, run by hand, initialises the vSphere layout from the image's mirror with no
	// network at all.
	layout, err := filepath.Glob("../../terraform/vsphere/standard/base-infrastructure/*.tf")
	if err != nil || len(layout) == 0 {
		t.Fatalf("the vSphere layout: %v %v", layout, err)
	}
	for _, f := range layout {
		im.put(t, f, filepath.Join("layout", filepath.Base(f)), 0o644)
	}
	out, code, _ = rigtest.Run(t, im.command(ctx, "", "/bin/sh", "-c", "cd "+installerimage.Home+"/layout && tofu init -input=false -no-color"))
	if code != 0 || !strings.Contains(out, "has been successfully initialized") || !strings.Contains(out, "hashicorp/vsphere") {
		t.Errorf("tofu init of the vSphere layout in the image, offline: exit %d\n%s", code, out)
	}

	// A full bootstrap from inside the image, reaching the rig's machines from its namespace.
	l := rigtest.StartLab(ctx, t, lab.Options{Masters: 1, Workers: 1})
	key := im.put(t, l.Rig.SSHKeyFile(), ".ssh/id_ed25519", 0o600)
	args := []string{"dhctl", "bootstrap", "--config", im.put(t, l.ConfigPath, "config.yml", 0o600),
		"--version-map-override", im.put(t, l.OverridePath, "override.yml", 0o600),
		"--ssh-known-hosts", im.put(t, l.KnownHosts, ".ssh/known_hosts", 0o600),
		"--ssh-user", "root", "--ssh-agent-private-keys", key, "--cluster-name", "lab",
		"--ssh-host", l.Masters[0].Address.String(), "--worker-host", l.Workers[0].Address.String()}
	start := time.Now()
	out, code, _ = rigtest.Run(t, im.command(ctx, l.Rig.NetNS(), args...))
	if code != 0 {
		t.Fatalf("dhctl bootstrap in the image: exit %d\n%s", code, out)
	}
	t.Logf("FIGURE bootstrap 1 master + 1 worker from inside the installer image: %v", time.Since(start).Round(100*time.Millisecond))
	// Its state is in the documented mount point.
	if _, err := os.Stat(filepath.Join(im.rootfs, installerimage.StateDir, "lab", "kubeconfig")); err != nil {
		t.Errorf("the state dir in the image: %v", err)
	}
	nodes, err := l.Masters[0].Run(ctx, "kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes --no-headers", nil)
	if err != nil || strings.Count(nodes, " Ready ") != 2 {
		t.Errorf("nodes after the bootstrap from the image: %v\n%s", err, nodes)
	}
}

// TestDockerfileMakesTheSameFiles reads the Dockerfile's instructions and checks that they make
// the same paths as the image the Go builder makes.
func TestDockerfileMakesTheSameFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	bin := filepath.Join(dir, "dhctl")
	os.WriteFile(bin, []byte("stand-in"), 0o755)
	in, err := artifacts.InstallerInputs(ctx, artifacts.Options{Logf: t.Logf}, bin, "v0.0.0-test")
	if err != nil {
		t.Fatal(err)
	}
	groups, err := installerimage.Files(in)
	if err != nil {
		t.Fatal(err)
	}
	built := map[string]bool{}
	for _, g := range groups {
		for _, e := range g {
			addWithParents(built, e.Path)
		}
	}
	fromDockerfile, err := dockerfilePaths("../../internal/installerimage/Dockerfile", in)
	if err != nil {
		t.Fatal(err)
	}
	var onlyGo, onlyDocker []string
	for p := range built {
		if !fromDockerfile[p] {
			onlyGo = append(onlyGo, p)
		}
	}
	for p := range fromDockerfile {
		if !built[p] {
			onlyDocker = append(onlyDocker, p)
		}
	}
	sort.Strings(onlyGo)
	sort.Strings(onlyDocker)
	if len(onlyGo)+len(onlyDocker) > 0 {
		t.Errorf("the Dockerfile and the Go builder differ:\n only the Go builder: %v\n only the Dockerfile: %v", onlyGo, onlyDocker)
	}
	t.Logf("both make the same %d paths", len(built))
}

func addWithParents(set map[string]bool, p string) {
	for p = filepath.Clean(p); p != "/" && p != "."; p = filepath.Dir(p) {
		set[p] = true
	}
}

// dockerfilePaths lists what the final stage of the Dockerfile makes, reading the instruction
// forms it keeps to: COPY [--from=X] [--chmod=M] src dst (src/ copies a tree),
// RUN ["/bin/busybox", "mkdir", "-p", dirs...], RUN ["/bin/busybox", "ln", "-s", target, link],
// RUN ["/bin/busybox", "--install", "-s", dir]; other RUN commands (chown, chmod) make nothing.
func dockerfilePaths(file string, in installerimage.Options) (map[string]bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]bool{}
	final := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "FROM ") {
			final = line == "FROM scratch"
			continue
		}
		if !final {
			continue
		}
		fields := strings.Fields(line)
		switch {
		case len(fields) > 0 && fields[0] == "COPY":
			var from string
			var rest []string
			for _, f := range fields[1:] {
				if v, ok := strings.CutPrefix(f, "--from="); ok {
					from = v
				} else if !strings.HasPrefix(f, "--") {
					rest = append(rest, f)
				}
			}
			if len(rest) != 2 {
				return nil, fmt.Errorf("%s: %q: want COPY src dst", file, line)
			}
			src, dst := rest[0], rest[1]
			if !strings.HasSuffix(src, "/") {
				addWithParents(out, dst)
				continue
			}
			var root string
			switch {
			case from == "" && src == "rootfs/":
				root = filepath.Join(filepath.Dir(file), "rootfs")
			case from == "bin" && src == "plugins/":
				root = in.PluginsDir
			default:
				return nil, fmt.Errorf("%s: %q: no tree known for %s from %q", file, line, src, from)
			}
			err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
				if err != nil {
					return err
				}
				rel, _ := filepath.Rel(root, p)
				addWithParents(out, filepath.Join(dst, rel))
				return nil
			})
			if err != nil {
				return nil, err
			}
		case len(fields) > 0 && fields[0] == "RUN":
			var argv []string
			for _, a := range strings.Split(strings.Trim(strings.TrimPrefix(line, "RUN"), " []"), ",") {
				argv = append(argv, strings.Trim(strings.TrimSpace(a), `"`))
			}
			if len(argv) < 2 || argv[0] != "/bin/busybox" {
				return nil, fmt.Errorf("%s: %q: want RUN [\"/bin/busybox\", ...]", file, line)
			}
			switch {
			case argv[1] == "mkdir" && len(argv) > 3 && argv[2] == "-p":
				for _, d := range argv[3:] {
					addWithParents(out, d)
				}
			case argv[1] == "ln" && len(argv) == 5 && argv[2] == "-s":
				addWithParents(out, argv[4])
			case argv[1] == "--install" && len(argv) == 4 && argv[2] == "-s":
				applets, err := installerimage.Applets(in.Busybox)
				if err != nil {
					return nil, err
				}
				for _, a := range applets {
					addWithParents(out, filepath.Join(argv[3], a))
				}
			case argv[1] == "chown" || argv[1] == "chmod":
			default:
				return nil, fmt.Errorf("%s: %q: a RUN form this test does not read", file, line)
			}
		}
	}
	return out, sc.Err()
}

// unpack writes a flattened image file system into dir, with its owners, modes and links.
func unpack(r io.ReadCloser, dir string) error {
	defer r.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
			continue
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			continue
		}
		if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
			return err
		}
		if err := os.Chmod(p, os.FileMode(h.Mode&0o777)|modeBits(h.Mode)); err != nil {
			return err
		}
	}
}

func modeBits(m int64) os.FileMode {
	var out os.FileMode
	if m&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}

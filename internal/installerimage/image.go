// Package installerimage builds dhctl's installer image without a container engine: dhctl with
// everything it needs (the OpenTofu or Terraform engine, the provider plugins in a filesystem
// mirror with a matching CLI configuration, CA certificates, a small shell), run as a non-root
// user, so an operator's machine needs nothing but a container runtime.
//
// The image's file system (Dockerfile in this directory builds the same one):
//
//	/opt/dhctl/dhctl              the binary; /usr/local/bin/dhctl links to it
//	/opt/dhctl/<engine>           tofu or terraform, found "beside dhctl" without a flag
//	/opt/dhctl/plugins/           the provider plugins (packed or unpacked layout), found beside dhctl
//	/opt/dhctl/terraformrc        a CLI configuration naming only that mirror (TF_CLI_CONFIG_FILE),
//	                              so the engine run by hand inside the image is offline too
//	/etc/ssl/certs/ca-certificates.crt
//	/bin/busybox and its applets  sh, ls, cat, vi, ... (every applet, as busybox --install -s /bin)
//	/etc/passwd, /etc/group       root and dhctl (65532)
//	/home/dhctl                   the user's home (1777: the image also runs as the operator's uid)
//	/state                        DHCTL_STATE_DIR (1777): mount a volume here so a resumed run finds its state
//	/tmp                          1777
package installerimage

import (
	"archive/tar"
	"bytes"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
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

// The user the image runs as.
const (
	UID      = 65532
	User     = "dhctl"
	Home     = "/home/dhctl"
	StateDir = "/state"
	Dir      = "/opt/dhctl"
)

// rootfs holds the image's own small files (users, the engine's CLI configuration); the
// Dockerfile copies the same directory.
//
//go:embed rootfs
var rootfs embed.FS

// Options are the image's inputs, all linux/amd64 files on this machine.
type Options struct {
	Dhctl      string // a static dhctl binary
	Engine     string // the tofu or terraform binary
	PluginsDir string // a provider filesystem mirror
	CACerts    string // a PEM bundle
	Busybox    string // a static busybox
	Version    string // dhctl's version, for the image's labels
	// WorkDir holds the layers' tars until the image is written.
	WorkDir string
}

// Entry is one file system entry of the image.
type Entry struct {
	Path   string // absolute
	Type   byte   // tar.TypeDir, tar.TypeReg, tar.TypeSymlink
	Mode   int64
	UID    int
	Source string // host file (regular files), or
	Data   []byte // content (regular files)
	Link   string // symlink target
}

// Files lists the image's entries, grouped in layers that change from rarely to often: the base
// (busybox, CA certificates, users, directories), the engine and plugins, dhctl.
func Files(o Options) ([][]Entry, error) {
	for what, p := range map[string]string{"dhctl": o.Dhctl, "engine": o.Engine, "CA certificates": o.CACerts, "busybox": o.Busybox} {
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("installer image: the %s file %q: not a regular file (%v)", what, p, err)
		}
	}
	engine := filepath.Base(o.Engine)
	if engine != "tofu" && engine != "terraform" {
		return nil, fmt.Errorf("installer image: the engine %s must be named tofu or terraform (dhctl looks for those beside itself)", o.Engine)
	}
	dir := func(p string, mode int64, uid int) Entry {
		return Entry{Path: p, Type: tar.TypeDir, Mode: mode, UID: uid}
	}
	base := []Entry{
		dir("/bin", 0o755, 0), dir("/etc", 0o755, 0), dir("/etc/ssl", 0o755, 0), dir("/etc/ssl/certs", 0o755, 0),
		// Home and the state dir are writable by any user, as /tmp is: operators run the image
		// with --user "$(id -u)" so it can read their 0600 SSH keys; dhctl keeps each cluster's
		// state in a 0700 directory of its own.
		dir("/home", 0o755, 0), dir(Home, 0o1777, UID), dir(StateDir, 0o1777, UID), dir("/tmp", 0o1777, 0),
		dir("/opt", 0o755, 0), dir(Dir, 0o755, 0), dir("/usr", 0o755, 0), dir("/usr/local", 0o755, 0), dir("/usr/local/bin", 0o755, 0),
		{Path: "/bin/busybox", Type: tar.TypeReg, Mode: 0o755, Source: o.Busybox},
		{Path: "/etc/ssl/certs/ca-certificates.crt", Type: tar.TypeReg, Mode: 0o644, Source: o.CACerts},
	}
	applets, err := Applets(o.Busybox)
	if err != nil {
		return nil, err
	}
	for _, a := range applets {
		base = append(base, Entry{Path: "/bin/" + a, Type: tar.TypeSymlink, Link: "/bin/busybox"})
	}
	err = fs.WalkDir(rootfs, "rootfs", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := rootfs.ReadFile(p)
		if err != nil {
			return err
		}
		base = append(base, Entry{Path: strings.TrimPrefix(p, "rootfs"), Type: tar.TypeReg, Mode: 0o644, Data: data})
		return nil
	})
	if err != nil {
		return nil, err
	}
	tools := []Entry{
		{Path: Dir + "/" + engine, Type: tar.TypeReg, Mode: 0o755, Source: o.Engine},
		{Path: "/usr/local/bin/" + engine, Type: tar.TypeSymlink, Link: Dir + "/" + engine},
	}
	plugins, err := tree(o.PluginsDir, Dir+"/plugins")
	if err != nil {
		return nil, err
	}
	tools = append(tools, plugins...)
	own := []Entry{
		{Path: Dir + "/dhctl", Type: tar.TypeReg, Mode: 0o755, Source: o.Dhctl},
		{Path: "/usr/local/bin/dhctl", Type: tar.TypeSymlink, Link: Dir + "/dhctl"},
	}
	return [][]Entry{base, tools, own}, nil
}

// Applets are the commands busybox links for itself (`busybox --install -s /bin` in the
// Dockerfile): what `busybox --list` prints.
func Applets(busybox string) ([]string, error) {
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("installer image: %s --list: %w", busybox, err)
	}
	var applets []string
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			applets = append(applets, a)
		}
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("installer image: %s --list printed no applet", busybox)
	}
	return applets, nil
}

// tree lists a host directory's entries under prefix (directories, regular files, symlinks).
func tree(root, prefix string) ([]Entry, error) {
	fi, err := os.Stat(root)
	if err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("installer image: the provider plugins %q: not a directory (%v)", root, err)
	}
	var out []Entry
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		dst := path.Join(prefix, filepath.ToSlash(rel))
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			// Followed: the image holds the file, not a link to this machine's path.
			st, err := os.Stat(p)
			if err != nil {
				return err
			}
			out = append(out, Entry{Path: dst, Type: tar.TypeReg, Mode: int64(st.Mode().Perm()), Source: p})
		case d.IsDir():
			out = append(out, Entry{Path: dst, Type: tar.TypeDir, Mode: 0o755})
		case info.Mode().IsRegular():
			out = append(out, Entry{Path: dst, Type: tar.TypeReg, Mode: int64(info.Mode().Perm() | 0o444), Source: p})
		}
		return nil
	})
	return out, err
}

// epoch is every entry's time: the same inputs give the same digests.
var epoch = time.Unix(0, 0).UTC()

// Build makes the image.
func Build(o Options) (v1.Image, error) {
	groups, err := Files(o)
	if err != nil {
		return nil, err
	}
	if o.WorkDir == "" {
		return nil, fmt.Errorf("installer image: no work directory")
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for i, g := range groups {
		file := filepath.Join(o.WorkDir, fmt.Sprintf("layer-%d.tar", i))
		if err := writeTar(file, g); err != nil {
			return nil, err
		}
		l, err := tarball.LayerFromFile(file, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, err
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return nil, err
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS = "amd64", "linux"
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", UID, UID),
		Entrypoint: []string{"/usr/local/bin/dhctl"},
		WorkingDir: Home,
		Env: []string{
			"PATH=/usr/local/bin:/bin",
			"HOME=" + Home,
			"DHCTL_STATE_DIR=" + StateDir,
			"TF_CLI_CONFIG_FILE=" + Dir + "/terraformrc",
			"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
		},
		Volumes: map[string]struct{}{StateDir: {}},
		Labels: map[string]string{
			"org.opencontainers.image.title":   "dhctl installer",
			"org.opencontainers.image.version": o.Version,
		},
	}
	return mutate.ConfigFile(img, cfg)
}

// writeTar writes entries (sorted, parents first) to file as a reproducible tar.
func writeTar(file string, entries []Entry) error {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("installer image: %w", err)
	}
	defer f.Close()
	sorted := append([]Entry(nil), entries...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	tw := tar.NewWriter(f)
	for _, e := range sorted {
		h := &tar.Header{Name: strings.TrimPrefix(e.Path, "/"), Typeflag: e.Type, Mode: e.Mode, Uid: e.UID, Gid: e.UID, ModTime: epoch, Format: tar.FormatPAX}
		var body io.Reader
		switch e.Type {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeSymlink:
			h.Linkname = e.Link
		case tar.TypeReg:
			h.Size = int64(len(e.Data))
			body = bytes.NewReader(e.Data)
			if e.Source != "" {
				src, err := os.Open(e.Source)
				if err != nil {
					return fmt.Errorf("installer image: %w", err)
				}
				defer src.Close()
				st, err := src.Stat()
				if err != nil {
					return err
				}
				h.Size, body = st.Size(), src
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if body != nil {
			if _, err := io.Copy(tw, body); err != nil {
				return fmt.Errorf("installer image: %s: %w", e.Path, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

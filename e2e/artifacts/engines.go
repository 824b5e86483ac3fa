package artifacts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Registry hosts a provider source without a host resolves to: OpenTofu reads
// `hashicorp/vsphere` as registry.opentofu.org/hashicorp/vsphere, Terraform as
// registry.terraform.io/hashicorp/vsphere. The mirror holds each provider
// under both, so one module and one mirror serve either engine.
const (
	OpenTofuRegistryHost  = "registry.opentofu.org"
	TerraformRegistryHost = "registry.terraform.io"
)

// MirrorHosts are the registry hosts the provider mirror lays providers under.
func MirrorHosts() []string { return []string{OpenTofuRegistryHost, TerraformRegistryHost} }

// providerSpec names a Terraform provider as a module's required_providers
// source does (namespace/type), for its place in the mirror.
type providerSpec struct {
	namespace, typ string
}

// platform is the provider platform directory of the machine the rig builds
// on, which is the one its engines run on.
func platform() string { return runtime.GOOS + "_" + runtime.GOARCH }

// ProviderMirror builds (or finds cached) the vSphere provider and returns
// the directory to name as a filesystem_mirror's path in an engine's CLI
// configuration. It holds the "unpacked" layout both engines read:
//
//	<dir>/registry.opentofu.org/hashicorp/vsphere/1.26.0/linux_amd64/terraform-provider-vsphere_v1.26.0
//	<dir>/registry.terraform.io/hashicorp/vsphere/1.26.0/linux_amd64/terraform-provider-vsphere_v1.26.0
func ProviderMirror(ctx context.Context, opts Options) (string, error) {
	if err := opts.defaults(); err != nil {
		return "", err
	}
	if _, err := Build(ctx, opts, VSphereProvider); err != nil {
		return "", err
	}
	return filepath.Join(opts.CacheDir, VSphereProvider+"-"+VSphereProviderVersion, "mirror"), nil
}

// layoutMirror (re)creates mirror with bin as provider p at version under
// every host of MirrorHosts. The entries are hard links of bin, so the mirror
// costs no space of its own.
func layoutMirror(mirror string, p providerSpec, version, bin string) error {
	if err := os.RemoveAll(mirror); err != nil {
		return err
	}
	v := strings.TrimPrefix(version, "v")
	for _, host := range MirrorHosts() {
		dir := filepath.Join(mirror, host, p.namespace, p.typ, v, platform())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		dst := filepath.Join(dir, "terraform-provider-"+p.typ+"_v"+v)
		if err := os.Link(bin, dst); err != nil {
			// Some file systems have no hard links: copy instead.
			if err := copyFile(bin, dst, 0o755); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyModule downloads module ("path@version") through the Go module proxy
// into the module cache and copies its directory to scratch, writable, so
// that `go build -mod=mod` may update the copy's go.mod and go.sum. It returns
// scratch.
func copyModule(ctx context.Context, module, scratch string) (string, error) {
	if err := os.RemoveAll(scratch); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", module)
	cmd.Dir = filepath.Dir(scratch)
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var m struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &m); jerr == nil && m.Error != "" {
		return "", fmt.Errorf("go mod download %s: %s", module, m.Error)
	}
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %w\n%s", module, err, lastLines(stderr.String(), 10))
	}
	if m.Dir == "" {
		return "", fmt.Errorf("go mod download -json %s named no directory: %q", module, out)
	}
	if err := copyTree(ctx, m.Dir, scratch); err != nil {
		os.RemoveAll(scratch)
		return "", fmt.Errorf("copying %s: %w", m.Dir, err)
	}
	return scratch, nil
}

// copyTree copies the regular files and directories under src to dst, owner
// writable (the module cache's are read-only). Module zips hold nothing else.
func copyTree(ctx context.Context, src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if info.Mode()&0o111 != 0 {
				mode = 0o755
			}
			return copyFile(p, target, mode)
		default:
			return fmt.Errorf("%s: not a regular file or directory (%v)", p, d.Type())
		}
	})
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// checkEngineVersion checks that an engine reports version (a release, not a
// -dev build) in `version -json`, under the key terraform-exec reads.
func checkEngineVersion(ctx context.Context, bin, version string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "version", "-json")
	// The binary's own directory holds no working directory state to report,
	// and an empty CLI configuration keeps the machine's out of the check.
	cmd.Dir = filepath.Dir(bin)
	cmd.Env = append(os.Environ(), "CHECKPOINT_DISABLE=1", "TF_CLI_CONFIG_FILE="+os.DevNull, "TF_IN_AUTOMATION=1")
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%s version -json: %w", bin, err)
	}
	var v struct {
		TerraformVersion string `json:"terraform_version"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return fmt.Errorf("%s version -json: %w in %q", bin, err, out)
	}
	if want := strings.TrimPrefix(version, "v"); v.TerraformVersion != want {
		return fmt.Errorf("%s version -json reports terraform_version %q, want %q", bin, v.TerraformVersion, want)
	}
	return nil
}

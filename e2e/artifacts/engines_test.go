package artifacts

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/internal/testctx"
)

// mirrorModule needs the vSphere provider at the pinned version and has one
// resource, so that validate makes the engine start the provider for its
// schema.
const mirrorModule = `terraform {
  required_providers {
    vsphere = {
      source  = "hashicorp/vsphere"
      version = "1.26.0"
    }
  }
}

resource "vsphere_folder" "e2e" {
  path = "dhctl-e2e"
  type = "vm"
}
`

// TestEnginesInstallVSphereProviderFromMirror builds OpenTofu, Terraform and
// the vSphere provider (cold: tens of minutes, warm: a second), then has each
// engine init a module requiring hashicorp/vsphere with a CLI configuration
// that allows only the provider mirror, and validate it. The engines run in a
// network namespace of their own, holding only a loopback interface that is
// down, so they cannot reach any network: a control run allowed only direct
// installation must fail there.
func TestEnginesInstallVSphereProviderFromMirror(t *testing.T) {
	ctx, cancel := testctx.New(t, 60*time.Minute)
	defer cancel()
	opts := Options{Logf: t.Logf}
	start := time.Now()
	bins, err := Build(ctx, opts, OpenTofu, Terraform, VSphereProvider)
	if err != nil {
		t.Fatal(err)
	}
	mirror, err := ProviderMirror(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("engines and provider ready in %v; mirror %s", time.Since(start).Round(time.Millisecond), mirror)
	wantSum := fileSum(t, bins[VSphereProvider])
	version := strings.TrimPrefix(VSphereProviderVersion, "v")
	providerFile := "terraform-provider-vsphere_" + VSphereProviderVersion

	for _, e := range []struct {
		name, bin, host, other string
	}{
		{"tofu", bins["tofu"], OpenTofuRegistryHost, TerraformRegistryHost},
		{"terraform", bins["terraform"], TerraformRegistryHost, OpenTofuRegistryHost},
	} {
		t.Run(e.name, func(t *testing.T) {
			dir := t.TempDir()
			work := filepath.Join(dir, "work")
			for _, d := range []string{work, filepath.Join(dir, "home"), filepath.Join(dir, "tmp")} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			writeFile(t, filepath.Join(work, "main.tf"), mirrorModule)
			mirrorOnly := filepath.Join(dir, "mirror.tfrc")
			writeFile(t, mirrorOnly, fmt.Sprintf(`disable_checkpoint = true
provider_installation {
  filesystem_mirror {
    path    = %q
    include = [%q, %q]
  }
  direct {
    exclude = ["*/*/*"]
  }
}
`, mirror, OpenTofuRegistryHost+"/hashicorp/vsphere", TerraformRegistryHost+"/hashicorp/vsphere"))
			directOnly := filepath.Join(dir, "direct.tfrc")
			writeFile(t, directOnly, "disable_checkpoint = true\nprovider_installation {\n  direct {}\n}\n")

			// The control: with only direct installation allowed, init has
			// to ask the registry, which it cannot reach from here.
			control := filepath.Join(dir, "control")
			if err := os.MkdirAll(control, 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(control, "main.tf"), mirrorModule)
			out, err := runOffline(ctx, t, dir, control, directOnly, e.bin, "init", "-input=false", "-no-color")
			if err == nil {
				t.Fatalf("%s init allowed only direct installation succeeded in a namespace without network:\n%s", e.name, out)
			}
			if !strings.Contains(out, e.host) {
				t.Errorf("%s init without the mirror failed without naming %s:\n%s", e.name, e.host, out)
			}

			t0 := time.Now()
			out, err = runOffline(ctx, t, dir, work, mirrorOnly, e.bin, "init", "-input=false", "-no-color")
			if err != nil {
				t.Fatalf("%s init: %v\n%s", e.name, err, out)
			}
			t.Logf("%s init took %v", e.name, time.Since(t0).Round(time.Millisecond))
			if !strings.Contains(out, "Installed hashicorp/vsphere v"+version) {
				t.Errorf("%s init did not report installing hashicorp/vsphere v%s:\n%s", e.name, version, out)
			}

			// The engine installed the mirror's binary, under the host its
			// own default registry names.
			installed := filepath.Join(work, ".terraform", "providers", e.host, "hashicorp", "vsphere", version, platform(), providerFile)
			if got := fileSum(t, installed); got != wantSum {
				t.Errorf("%s installed %s with sha256 %s, the mirror's binary has %s", e.name, installed, got, wantSum)
			}
			if _, err := os.Stat(filepath.Join(work, ".terraform", "providers", e.other)); !os.IsNotExist(err) {
				t.Errorf("%s installed providers under %s too (stat: %v)", e.name, e.other, err)
			}
			lock, err := os.ReadFile(filepath.Join(work, ".terraform.lock.hcl"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(lock), fmt.Sprintf("provider %q", e.host+"/hashicorp/vsphere")) ||
				!strings.Contains(string(lock), fmt.Sprintf("%q", version)) {
				t.Errorf("%s lock file does not pin %s/hashicorp/vsphere %s:\n%s", e.name, e.host, version, lock)
			}

			// validate starts the provider and checks the module against its
			// schema: the binary in the mirror is a working provider.
			out, err = runOffline(ctx, t, dir, work, mirrorOnly, e.bin, "validate", "-json", "-no-color")
			var v struct {
				Valid       bool `json:"valid"`
				Diagnostics []struct {
					Summary string `json:"summary"`
				} `json:"diagnostics"`
			}
			if jerr := json.Unmarshal([]byte(out), &v); err != nil || jerr != nil || !v.Valid {
				t.Errorf("%s validate: %v %v valid=%v\n%s", e.name, err, jerr, v.Valid, out)
			}
		})
	}
}

// runOffline runs an engine in work with only the given CLI configuration, a
// HOME and TMPDIR under dir, and a network namespace of its own whose only
// interface, loopback, is down. The provider talks to the engine over a Unix
// socket in TMPDIR, which needs no network.
func runOffline(ctx context.Context, t *testing.T, dir, work, cliConfig, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = work
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + filepath.Join(dir, "home"),
		"TMPDIR=" + filepath.Join(dir, "tmp"),
		"TF_CLI_CONFIG_FILE=" + cliConfig,
		"CHECKPOINT_DISABLE=1",
		"TF_IN_AUTOMATION=1",
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() != 0 {
		// Without root, a user namespace of its own lets the engine have
		// a network namespace too, as the same user.
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: os.Geteuid(), HostID: os.Geteuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: os.Getegid(), HostID: os.Getegid(), Size: 1}}
	}
	cmd.WaitDelay = 10 * time.Second
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		// The engine never started: no namespace, so no test.
		t.Fatalf("starting %s %v in a network namespace of its own: %v", bin, args, err)
	}
	return b.String(), err
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(data))
}

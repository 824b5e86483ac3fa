package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dhctl-dev/dhctl/e2e/artifacts"
)

// A binary built as `make release` builds it says its version, commit and date; --verbose says
// where the engine and the provider plugins come from: beside dhctl, as an installer image or a
// release archive lays them out, without any flag.
func TestVersionOfAStampedBuildFindsItsEngineAndPlugins(t *testing.T) {
	ctx := context.Background()
	bins, err := artifacts.Build(ctx, artifacts.Options{}, artifacts.OpenTofu)
	if err != nil {
		t.Fatal(err)
	}
	mirrorDir, err := artifacts.ProviderMirror(ctx, artifacts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "dhctl")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags",
		"-s -w -X main.version=v9.8.7 -X main.commit=0123456789abcdef0123 -X main.date=2026-12-07T10:00:00Z", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.Symlink(bins["tofu"], filepath.Join(dir, "tofu")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(mirrorDir, filepath.Join(dir, "plugins")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "version", "--verbose")
	cmd.Env = []string{"PATH=/nonexistent"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("version --verbose: %v\n%s", err, out)
	}
	for _, want := range []string{
		"dhctl v9.8.7 (commit 0123456789ab, built 2026-12-07T10:00:00Z, ",
		"infrastructure engine: OpenTofu 1.10.6 (" + filepath.Join(dir, "tofu") + ", beside dhctl)",
		"provider plugins: " + filepath.Join(dir, "plugins") + " (beside dhctl):",
		"registry.opentofu.org/hashicorp/vsphere 1.26.0 linux_amd64 (unpacked)",
		"provider releases mirror pull carries: hashicorp/vsphere 2.1.1",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("version --verbose lacks %q:\n%s", want, out)
		}
	}
	// The environment names the plugins directory as well as the flag does, and says so.
	cmd = exec.CommandContext(ctx, bin, "version", "--verbose")
	cmd.Env = []string{"PATH=/nonexistent", "DHCTL_TERRAFORM_PLUGINS_DIR=" + mirrorDir}
	if out, err = cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "provider plugins: "+mirrorDir+" (DHCTL_TERRAFORM_PLUGINS_DIR):") {
		t.Errorf("version --verbose with DHCTL_TERRAFORM_PLUGINS_DIR: %v\n%s", err, out)
	}
}

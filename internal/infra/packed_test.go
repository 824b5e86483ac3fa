package infra

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/artifacts"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/mirror"
)

// The provider plugins an air-gapped operator carries are what `dhctl mirror pull` lays out in a
// bundle: zips in the "packed" layout. Both engines install the provider from there, offline,
// and plan against the simulator.
func TestEnginesInstallTheProviderFromABundle(t *testing.T) {
	l := startLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	version := strings.TrimPrefix(artifacts.VSphereProviderVersion, "v")
	bin := filepath.Join(l.mirror, "registry.terraform.io", "hashicorp", "vsphere", version, "linux_amd64", "terraform-provider-vsphere_v"+version)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var z bytes.Buffer
	zw := zip.NewWriter(&z)
	fw, err := zw.CreateHeader(&zip.FileHeader{Name: filepath.Base(bin), Method: zip.Deflate, ExternalAttrs: 0o755 << 16, CreatorVersion: 3 << 8})
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(z.Bytes())
	vm := &config.VersionMap{TerraformProviders: map[string]config.TerraformProvider{
		"hashicorp/vsphere": {Version: version, SHA256: hex.EncodeToString(sum[:])}}}
	bundle := t.TempDir()
	w, err := mirror.NewWriter(bundle)
	if err != nil {
		t.Fatal(err)
	}
	p := vm.TerraformProviders["hashicorp/vsphere"]
	it := mirror.Item{Kind: mirror.KindTerraformProvider, Name: "terraform-provider-vsphere", Path: mirror.PackagePath("terraform-provider-vsphere", version),
		Archive: mirror.ArchivePackages, Version: version, Source: "hashicorp/vsphere", Files: []config.PackageFile{{Name: p.PackedName("hashicorp/vsphere"), SHA256: p.SHA256}}}
	if _, err := w.AddPackage(ctx, it, func(context.Context, mirror.PackageFileRef) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(z.Bytes())), nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Finish(ctx, []mirror.Item{it}, 0); err != nil {
		t.Fatal(err)
	}
	w.Close()
	l.mirror = filepath.Join(bundle, mirror.TerraformPluginsDir)
	for _, engine := range []string{"tofu", "terraform"} {
		t.Run(engine, func(t *testing.T) {
			r := l.runner(t, engine, &memStore{states: map[string][]byte{}}, t.TempDir())
			plan, err := r.Plan(ctx, step(l, "vm-packed-"+engine, 1024, "DC0_H0_VM0"), []string{"vsphere_virtual_machine"})
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.Changes) != 1 || plan.Changes[0].Action != Create {
				t.Fatalf("plan with the provider from the bundle: %+v", plan.Changes)
			}
		})
	}
}

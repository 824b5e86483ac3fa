package rig

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/images"
	"github.com/dhctl-dev/dhctl/e2e/internal/testctx"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/mirror"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestRegistryTLSAndAuth(t *testing.T) {
	ctx, cancel := testctx.New(t, 10*time.Minute)
	defer cancel()
	r, err := New(ctx, Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertNoLeftovers(t, r, nil)
	})
	start := time.Now()
	reg, err := r.StartRegistry(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("registry at %s ready in %v", reg.Host, time.Since(start))

	// Without credentials: 401. Without the rig's CA: TLS fails.
	resp, err := (&http.Client{Transport: reg.Transport()}).Get("https://" + reg.Host + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v2/ without credentials: %s, want 401", resp.Status)
	}
	untrusting := reg.Transport()
	untrusting.TLSClientConfig = &tls.Config{}
	if _, err := (&http.Client{Transport: untrusting}).Get("https://" + reg.Host + "/v2/"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("GET without the rig's CA: err %v, want a certificate error", err)
	}

	dst := images.Registry{Transport: reg.Transport(), User: reg.User, Password: reg.Password}
	dir := t.TempDir()
	layer, err := images.LayerFromFiles(dir, []images.File{{Path: "/hello", Data: []byte("hello\n"), Mode: 0o644}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := images.Image([]v1.Layer{layer}, images.Config{Entrypoint: []string{"/hello"}})
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Host + "/dhctl/hello:v1"
	pushed, err := images.Push(ctx, ref, img, dst)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := images.Digest(ctx, ref, dst); err != nil || got != pushed {
		t.Fatalf("digest of %s = %v, %v; pushed %v", ref, got, err, pushed)
	}
	wrong := dst
	wrong.Password = "wrong"
	if _, err := images.Digest(ctx, ref, wrong); err == nil {
		t.Errorf("looking up %s with a wrong password succeeded", ref)
	}

	src := filepath.Join(dir, "tool")
	os.WriteFile(src, []byte("#!/bin/sh\necho tool\n"), 0o755)
	// A package goes in as the product puts it there: a bundle, pushed by dhctl mirror push's code.
	sum := sha256.Sum256([]byte("#!/bin/sh\necho tool\n"))
	it := mirror.Item{Kind: mirror.KindPackage, Name: "tool", Version: "1.0~rc1+b1", Path: mirror.PackagePath("tool", "1.0~rc1+b1"),
		Archive: mirror.ArchivePackages, Files: []config.PackageFile{{Name: "tool", SHA256: hex.EncodeToString(sum[:])}}}
	bundle := filepath.Join(dir, "bundle")
	w, err := mirror.NewWriter(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddPackage(ctx, it, func(context.Context, mirror.PackageFileRef) (io.ReadCloser, error) { return os.Open(src) }); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Finish(ctx, []mirror.Item{it}, 0); err != nil {
		t.Fatal(err)
	}
	w.Close()
	b, err := mirror.Open(bundle)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := mirror.Push(ctx, b, mirror.PushOptions{Repo: reg.Host + "/dhctl", Registry: mirror.Registry{Transport: dst.Transport, User: dst.User, Password: dst.Password}}); err != nil {
		t.Fatal(err)
	}
	pkgRef := reg.Host + "/dhctl/packages/tool:1.0_rc1_b1"
	files, err := images.FetchPackage(ctx, pkgRef, dst, filepath.Join(dir, "fetched"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 {
		t.Fatalf("fetched %v, want one file", files)
	}
	if got, _ := os.ReadFile(files[0]); !bytes.Equal(got, []byte("#!/bin/sh\necho tool\n")) {
		t.Errorf("fetched file content %q", got)
	}
	if _, err := images.FetchPackage(ctx, ref, dst, filepath.Join(dir, "notpkg")); err == nil {
		t.Errorf("FetchPackage of an image (not a package) succeeded")
	}
}

package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/candi"
)

func benchOptions(b *testing.B) LoadOptions {
	return LoadOptions{
		ConfigPaths:           []string{filepath.Join(examplesDir, "static-cluster.yml")},
		ConnectionConfigPaths: []string{filepath.Join(examplesDir, "connection.yml")},
		LookupEnv:             envMap(map[string]string{"SSH_PRIVATE_KEY": newSSHKey(b, "")}),
	}
}

// BenchmarkLoadExamples: what `dhctl config validate` costs on the examples, built-in schemas
// parsed on every call (as the CLI does once per run).
func BenchmarkLoadExamples(b *testing.B) {
	opts := benchOptions(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(context.Background(), opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadExamplesSharedRegistry: the same with the registry and version map built once.
func BenchmarkLoadExamplesSharedRegistry(b *testing.B) {
	opts := benchOptions(b)
	var err error
	if opts.Schemas, err = NewRegistry(candi.FS); err != nil {
		b.Fatal(err)
	}
	if opts.VersionMap, err = LoadVersionMap(candi.FS); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(context.Background(), opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadBrokenExample: a config with four problems (messages, line lookups).
func BenchmarkLoadBrokenExample(b *testing.B) {
	opts := LoadOptions{ConfigPaths: []string{filepath.Join(examplesDir, "broken", "bad-registry.yml")}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(context.Background(), opts); err == nil {
			b.Fatal("broken example loaded")
		}
	}
}

// BenchmarkHostile loads each of hostileShapes (limits_test.go): the worst inputs of up to 8 MiB
// found, refused or loaded within the limits. Registry and version map are built once, so the
// figures are the loading itself; `dhctl config validate` adds ~10 ms for the schemas.
func BenchmarkHostile(b *testing.B) {
	reg, vm := testRegistry(b)
	for _, sh := range hostileShapes {
		b.Run(strings.ReplaceAll(sh.name, " ", "_"), func(b *testing.B) {
			p := writeFile(b, "config.yml", sh.data())
			opts := LoadOptions{ConfigPaths: []string{p}, Schemas: reg, VersionMap: vm}
			b.ReportAllocs()
			for b.Loop() {
				_, err := Load(context.Background(), opts)
				var ps Problems
				if err != nil && !errors.As(err, &ps) {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestMeasureLoad is for measuring the peak RSS of a `dhctl config validate`-like run of one of
// hostileShapes (built-in schemas, one Load), which a benchmark cannot show:
//
//	go test -c -o /tmp/config.test ./internal/config
//	DHCTL_MEASURE_SHAPE='dense flow sequence' /usr/bin/time -v /tmp/config.test -test.run '^TestMeasureLoad$'
//
// Without DHCTL_MEASURE_SHAPE it checks only that every shape has a name it can be picked by.
func TestMeasureLoad(t *testing.T) {
	name := os.Getenv("DHCTL_MEASURE_SHAPE")
	if name == "" {
		seen := map[string]bool{}
		for _, sh := range hostileShapes {
			if sh.name == "" || seen[sh.name] {
				t.Errorf("shape name %q is empty or not unique", sh.name)
			}
			seen[sh.name] = true
		}
		return
	}
	for _, sh := range hostileShapes {
		if sh.name != name {
			continue
		}
		p := writeFile(t, "config.yml", sh.data())
		start := time.Now()
		_, err := Load(context.Background(), LoadOptions{ConfigPaths: []string{p}})
		var ps Problems
		if err != nil && !errors.As(err, &ps) {
			t.Fatal(err)
		}
		t.Logf("%s: %v, %d problems", name, time.Since(start), len(ps))
		return
	}
	t.Fatalf("no shape %q", name)
}

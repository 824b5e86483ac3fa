package config

import (
	"context"
	"path/filepath"
	"testing"

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

package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to Load as a --config file and as a --connection-config file.
// Load must never panic, and must either succeed or return Problems whose every entry says
// something. `make test` runs it for a bounded time:
//
//	go test -run '^$' -fuzz '^FuzzLoad$' -fuzztime 20s ./internal/config
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"static-cluster.yml", "connection.yml", "broken/overlapping-cidrs.yml", "broken/cloud-without-provider.yml", "broken/bad-registry.yml"} {
		data, err := os.ReadFile(filepath.Join(examplesDir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, tc := range malformedCases {
		f.Add([]byte(tc.config + tc.conn + tc.resources))
	}
	f.Add([]byte(validCC + "---\n" + validInit + "---\n" + validNG))
	f.Add([]byte("a: &a [1]\nb: *a\n"))
	f.Add([]byte("{{ if env \"X\" }}a: 1{{ else }}b: 2{{ end }}\n"))

	reg, err := NewRegistry(os.DirFS("../../candi"))
	if err != nil {
		f.Fatal(err)
	}
	vm, err := LoadVersionMap(os.DirFS("../../candi"))
	if err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	env := envMap(map[string]string{"KEY": "not-a-key", "X": "1"})
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "fuzz.yml")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, opts := range []LoadOptions{
			{ConfigPaths: []string{p}, LookupEnv: env, Schemas: reg, VersionMap: vm},
			{ConnectionConfigPaths: []string{p}, ResourcePaths: []string{p}, LookupEnv: env, Schemas: reg, VersionMap: vm},
		} {
			c, err := Load(context.Background(), opts)
			if err == nil {
				if c == nil {
					t.Fatal("nil Cluster without an error")
				}
				if _, err := c.RenderDefaults(); err != nil {
					t.Fatalf("RenderDefaults of a valid config: %v", err)
				}
				continue
			}
			var ps Problems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("error is not a non-empty Problems: %v", err)
			}
			for _, pr := range ps {
				if pr.Message == "" || strings.TrimSpace(pr.Error()) == "" {
					t.Fatalf("problem without a message: %#v", pr)
				}
			}
		}
	})
}

package config

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fuzzLimits are smaller than the real ones, so that an input that runs into a limit costs little
// and the fuzzer keeps its pace: the cost of every input should then stay far below the per-input
// budget below, and an input over it has found a cost the limits do not bound.
func fuzzLimits() *limits {
	return &limits{values: 20_000, rendered: 1 << 20, templateWork: 512 << 10, actionBytes: 16 << 10, kdfRounds: 16}
}

// Per input (all its loads together): CPU time (user + system of the process: unlike the wall
// clock, hardly changed by other work on the machine), wall time (only a hang detector) and bytes
// allocated.
const (
	fuzzMaxCPU   = time.Second
	fuzzMaxWall  = 10 * time.Second
	fuzzMaxAlloc = 64 << 20
)

// fuzzMaxInput bounds the inputs tried: with fuzzLimits, 64 KiB reach every limit, and the
// fuzzer minimizes each new interesting input by running it over and over, which for a large one
// stops a worker for up to a minute.
const fuzzMaxInput = 64 << 10

// fuzzSecret is the value of an environment variable the inputs may read; no problem may print it.
const fuzzSecret = "Zs3cr3tQ8"

// FuzzLoad feeds arbitrary bytes to Load as a --config file, and as a --connection-config and a
// --resources file. Load must never panic, must either succeed or return Problems whose every
// entry says something, must never print the value of an environment variable, and must stay
// within a budget of time and memory for each input. `make fuzz` runs it for a bounded time:
//
//	go test -run '^$' -fuzz '^FuzzLoad$' -fuzztime 20s ./internal/config
//
// Inputs it found that broke these rules are kept in testdata/fuzz/FuzzLoad, and run with every
// `go test`.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"static-cluster.yml", "connection.yml", "broken/overlapping-cidrs.yml", "broken/cloud-without-provider.yml", "broken/bad-registry.yml"} {
		data, err := os.ReadFile(filepath.Join(examplesDir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, tc := range malformedCases {
		if data := tc.config + tc.conn + tc.resources; len(data) <= fuzzMaxInput {
			f.Add([]byte(data))
		}
	}
	f.Add([]byte(validCC + "---\n" + validInit + "---\n" + validNG))
	f.Add([]byte("a: &a [1]\nb: *a\n"))
	f.Add([]byte("{{ if env \"X\" }}a: 1{{ else }}b: 2{{ end }}\n"))
	f.Add([]byte(validCC + "clusterDomain: {{ env \"SECRET\" }}.x_y\nkubernetesVersion: {{ env \"SECRET\" | quote }}\n"))

	reg, vm := testRegistry(f)
	dir := f.TempDir()
	env := envMap(map[string]string{"KEY": "not-a-key", "X": "1", "SECRET": fuzzSecret})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > fuzzMaxInput {
			return
		}
		p := filepath.Join(dir, "fuzz.yml")
		p2 := filepath.Join(dir, "fuzz-resources.yml") // another file: the same one twice is a problem of its own
		for _, path := range []string{p, p2} {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		runs := []LoadOptions{
			{ConfigPaths: []string{p}, LookupEnv: env, Schemas: reg, VersionMap: vm, limits: fuzzLimits()},
			{ConnectionConfigPaths: []string{p}, ResourcePaths: []string{p2}, LookupEnv: env, Schemas: reg, VersionMap: vm, limits: fuzzLimits()},
		}
		type result struct {
			c   *Cluster
			err error
		}
		results := make([]result, len(runs))
		cpu0, wall0, alloc0 := cpuTime(), time.Now(), allocated()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i, opts := range runs {
				results[i].c, results[i].err = Load(context.Background(), opts)
			}
		}()
		select {
		case <-done:
		case <-time.After(fuzzMaxWall):
			t.Fatalf("Load did not return within %v", fuzzMaxWall)
		}
		if cpu := cpuTime() - cpu0; cpu > fuzzMaxCPU {
			t.Errorf("Load took %v of CPU (%v wall), more than %v", cpu, time.Since(wall0), fuzzMaxCPU)
		}
		if alloc := allocated() - alloc0; alloc > fuzzMaxAlloc {
			t.Errorf("Load allocated %d MiB, more than %d MiB", alloc>>20, fuzzMaxAlloc>>20)
		}
		for _, r := range results {
			if r.err == nil {
				if r.c == nil {
					t.Fatal("nil Cluster without an error")
				}
				if _, err := r.c.RenderDefaults(); err != nil {
					t.Fatalf("RenderDefaults of a valid config: %v", err)
				}
				continue
			}
			var ps Problems
			if !errors.As(r.err, &ps) || len(ps) == 0 {
				t.Fatalf("error is not a non-empty Problems: %v", r.err)
			}
			for _, pr := range ps {
				text := pr.Error()
				if pr.Message == "" || strings.TrimSpace(text) == "" {
					t.Fatalf("problem without a message: %#v", pr)
				}
				if len(text) > 16<<10 {
					t.Errorf("a problem of %d bytes: %.200s...", len(text), text)
				}
				if strings.Contains(text, fuzzSecret) && !bytes.Contains(data, []byte(fuzzSecret)) {
					t.Errorf("the value of an environment variable is in a problem: %s", text)
				}
			}
		}
	})
}

// cpuTime is the CPU time (user + system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// allocated is the bytes the process has allocated so far.
func allocated() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

package rig

import (
	"context"
	"testing"
	"time"
)

// BenchmarkMachineBootToSSH measures one machine from nothing to answering
// SSH (overlay mount, host keys, nspawn, systemd boot, sshd), and, reported
// separately, its graceful stop.
func BenchmarkMachineBootToSSH(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	r, err := New(ctx, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	var stop time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ms, err := r.StartMachines(ctx, 1)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		start := time.Now()
		if err := r.StopMachine(ms[0].Name); err != nil {
			b.Fatal(err)
		}
		stop += time.Since(start)
		b.StartTimer()
	}
	b.ReportMetric(float64(stop.Milliseconds())/float64(b.N), "stop-ms/op")
}

// BenchmarkNewClose measures a rig without machines: host check, sweep,
// cached image lookup, namespace and bridge, then teardown.
func BenchmarkNewClose(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	for i := 0; i < b.N; i++ {
		r, err := New(ctx, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRegistryStart measures the registry from nothing (CA, certificate,
// bcrypt htpasswd, process) to answering /v2/ with TLS and credentials.
func BenchmarkRegistryStart(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		r, err := New(ctx, Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := r.StartRegistry(ctx); err != nil {
			r.Close()
			b.Fatal(err)
		}
		b.StopTimer()
		r.Close()
		b.StartTimer()
	}
}

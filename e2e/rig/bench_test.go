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

package install

import (
	"context"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/kubetest"
	"github.com/dhctl-dev/dhctl/internal/phase"
)

// BenchmarkInstallApply: the apply phases (CNI, CoreDNS, NodeGroups, platform, cluster state) against
// a real API server. "first" is a fresh install into a clean namespace set (measured once, as
// first-ms), the loop is the re-run that must change nothing.
func BenchmarkInstallApply(b *testing.B) {
	c, err := loadBenchConfig()
	if err != nil {
		b.Fatal(err)
	}
	cluster := kubetest.Start(b, kubetest.Options{ServiceCIDR: c.ClusterConfiguration.ServiceSubnetCIDR})
	client, err := kube.New(cluster.Config)
	if err != nil {
		b.Fatal(err)
	}
	in, err := New(Options{Kube: client, Cluster: c, VersionMap: testVersionMap(b), ClusterUUID: testUUID})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	phases := applyPhases(in)
	start := time.Now()
	if _, err := phase.Run(ctx, phases, phase.Options{}); err != nil {
		b.Fatal(err)
	}
	first := time.Since(start)
	objects := 0
	for _, f := range []func() (int, error){count(in.CNIObjects), count(in.DNSObjects), count(in.NodeGroupObjects), count(in.PlatformObjects), count(in.ClusterStateObjects)} {
		n, err := f()
		if err != nil {
			b.Fatal(err)
		}
		objects += n
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, p := range phases {
			if err := p.Run(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(first.Milliseconds()), "first-ms")
	b.ReportMetric(float64(objects), "objects")
}

func count[T any](f func() ([]T, error)) func() (int, error) {
	return func() (int, error) {
		l, err := f()
		return len(l), err
	}
}

// BenchmarkRender: rendering every template set from the configuration (no cluster).
func BenchmarkRender(b *testing.B) {
	c, err := loadBenchConfig()
	if err != nil {
		b.Fatal(err)
	}
	in, err := New(Options{Connect: func(context.Context) (*kube.Client, error) { return nil, nil }, Cluster: c, VersionMap: testVersionMap(b), ClusterUUID: testUUID})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		for _, f := range []func() (int, error){count(in.CNIObjects), count(in.DNSObjects), count(in.NodeGroupObjects), count(in.PlatformObjects), count(in.ClusterStateObjects)} {
			if _, err := f(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

package nodebundle

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/kubeadm"
	"github.com/dhctl-dev/dhctl/internal/kubetest"
	"github.com/dhctl-dev/dhctl/internal/state"
)

// Join data read from the cluster (RestoreJoin) hold no token: the first join makes one, in a
// real API server, and keeps it in the state dir; the next keeps using it.
func TestRestoredJoinDataGetATokenAtTheFirstJoin(t *testing.T) {
	cluster := kubetest.Start(t, kubetest.Options{})
	k, err := kube.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := state.Open(ctx, t.TempDir(), "lab")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	l := clusterstate.NewLocal(d)
	key := strings.Repeat("ab", 32)
	restored := clusterstate.Join{MasterHost: "10.0.0.11", MasterIP: "10.0.0.11",
		Join:    kubeadm.JoinInfo{APIServerEndpoint: "10.0.0.11:6443", CACertHash: "sha256:" + strings.Repeat("cd", 32), CertificateKey: key},
		Secrets: kubeadm.Secrets{CertificateKey: key}}
	if err := l.SaveJoin(restored); err != nil {
		t.Fatal(err)
	}
	c, vm := load(t)
	nodes, err := NewNodes(NodesOptions{Candi: candi.FS, Cluster: c, VersionMap: vm, State: l})
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := nodes.EnsureJoinToken(ctx, k.Typed())
	if err != nil || !renewed {
		t.Fatalf("EnsureJoinToken on restored join data: renewed %v, %v", renewed, err)
	}
	j, err := l.Join()
	if err != nil {
		t.Fatal(err)
	}
	if !j.Ready() || j.Join.Token != j.Secrets.Token || j.Join.CertificateKey != key || j.Join.CACertHash != restored.Join.CACertHash {
		t.Fatalf("join data after the token was made: ready %v, %+v", j.Ready(), j.Join.APIServerEndpoint)
	}
	id, _, _ := strings.Cut(j.Join.Token, ".")
	if _, err := k.Typed().CoreV1().Secrets("kube-system").Get(ctx, "bootstrap-token-"+id, metav1.GetOptions{}); err != nil {
		t.Fatalf("the token is not in the cluster: %v", err)
	}
	if renewed, err := nodes.EnsureJoinToken(ctx, k.Typed()); err != nil || renewed {
		t.Errorf("a second EnsureJoinToken: renewed %v, %v; want the token kept", renewed, err)
	}
}

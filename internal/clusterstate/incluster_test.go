package clusterstate

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/kubetest"
)

const testUUID = "0b7e7c3e-3d7a-4f0a-9d51-0c3a4f6f2d11"

func loadStatic(t *testing.T) *config.Cluster {
	t.Helper()
	c, err := config.Load(context.Background(), config.LoadOptions{ConfigPaths: []string{"../install/testdata/cluster.yml"}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestObjectsNamesAndChecks(t *testing.T) {
	c := loadStatic(t)
	if _, err := Objects(Contents{Cluster: c, UUID: "not-a-uuid"}); err == nil || !strings.Contains(err.Error(), "not a lower-case UUID") {
		t.Errorf("bad uuid: %v", err)
	}
	objs, err := Objects(Contents{Cluster: c, UUID: testUUID, Infra: Infra{Base: []byte(`{"version":4}`),
		Nodes: []NodeState{{Node: "m-0", NodeGroup: "master", State: []byte(`{}`)}}}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.GetNamespace()+"/"+o.GetName())
	}
	want := "kube-system/d8-cluster-configuration kube-system/d8-static-cluster-configuration d8-system/d8-dhctl-init-configuration kube-system/d8-cluster-uuid d8-system/d8-cluster-terraform-state d8-system/d8-node-terraform-state-m-0"
	if strings.Join(names, " ") != want {
		t.Errorf("got %s\nwant %s", strings.Join(names, " "), want)
	}
	if _, err := Objects(Contents{Cluster: c, UUID: testUUID, Infra: Infra{Nodes: []NodeState{{Node: "m-0"}}}}); err == nil {
		t.Error("a node state without state bytes was accepted")
	}
}

// What the writer stores, the reader returns, against a real API server: the snapshot converge
// and destroy start from.
func TestReadReturnsWhatObjectsStored(t *testing.T) {
	cl := kubetest.Start(t, kubetest.Options{})
	k, err := kube.New(cl.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx := context.Background()

	if _, err := Read(ctx, k.Typed(), k.Host()); err == nil {
		t.Fatal("read a state from an empty cluster")
	} else if _, ok := err.(*NoClusterStateError); !ok || !strings.Contains(err.Error(), ClusterConfigurationSecret) {
		t.Fatalf("empty cluster: %v", err)
	}

	c := loadStatic(t)
	infra := Infra{Base: []byte(`{"version":4,"serial":3}`), DiscoveryData: []byte(`{"zones":["a"]}`),
		Nodes: []NodeState{
			{Node: "lab-worker-1", NodeGroup: "worker", State: []byte(`{"serial":1}`), Settings: []byte(`{"replicas":2}`)},
			{Node: "lab-master-0", NodeGroup: "master", State: []byte(`{"serial":2}`)},
		}}
	objs, err := Objects(Contents{Cluster: c, UUID: testUUID, Infra: infra})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{ConfigNamespace, StateNamespace} {
		if _, err := k.Apply(ctx, namespace(ns)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := k.ApplyAll(ctx, objs, kube.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	snap, err := Read(ctx, k.Typed(), k.Host())
	if err != nil {
		t.Fatal(err)
	}
	if snap.UUID != testUUID || snap.MaxUsedControlPlaneKubernetesVersion != c.KubernetesVersion {
		t.Errorf("uuid %q, version %q", snap.UUID, snap.MaxUsedControlPlaneKubernetesVersion)
	}
	if !bytes.Contains(snap.ClusterConfiguration, []byte("kind: ClusterConfiguration")) || !bytes.Contains(snap.StaticClusterConfiguration, []byte("kind: StaticClusterConfiguration")) {
		t.Errorf("configuration documents:\n%s\n%s", snap.ClusterConfiguration, snap.StaticClusterConfiguration)
	}
	if string(snap.BaseInfraState) != string(infra.Base) {
		t.Errorf("base infra state %q", snap.BaseInfraState)
	}
	if len(snap.Nodes) != 2 || snap.Nodes[0].Node != "lab-master-0" || snap.Nodes[1].NodeGroup != "worker" || string(snap.Nodes[1].Settings) != `{"replicas":2}` {
		t.Errorf("node states: %+v", snap.Nodes)
	}
	if n, ok := snap.Node("lab-worker-1"); !ok || string(n.State) != `{"serial":1}` {
		t.Errorf("node lab-worker-1: %+v %v", n, ok)
	}
	// The stored documents load again with the same rules: converge's desired state, the
	// registry included (a node joined later pulls from it).
	docs := snap.ConfigDocuments()
	if bytes.Count(docs, []byte("\n---\n")) != 2 {
		t.Errorf("config documents:\n%s", docs)
	}
	path := filepath.Join(t.TempDir(), "stored.yml")
	if err := os.WriteFile(path, docs, 0o600); err != nil {
		t.Fatal(err)
	}
	again, err := config.Load(ctx, config.LoadOptions{ConfigPaths: []string{path}})
	if err != nil {
		t.Fatalf("the stored documents do not load: %v", err)
	}
	if again.InitConfiguration == nil || again.InitConfiguration.Deckhouse != c.InitConfiguration.Deckhouse {
		t.Errorf("stored InitConfiguration %+v, want %+v", again.InitConfiguration, c.InitConfiguration)
	}
}

func namespace(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name}}}
}

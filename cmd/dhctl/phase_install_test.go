package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dhctl-dev/dhctl/internal/kubetest"
)

// The install commands against a real API server reached with --kubeconfig: install-deckhouse
// applies everything (the wait skipped: no nodes), create-resources creates the resources, and
// the wait, run alone with a short bound, fails naming the platform Deployment and why.
func TestInstallCommandsWithKubeconfig(t *testing.T) {
	// The service range of the configuration below (CoreDNS's Service IP is taken from it).
	cluster := kubetest.Start(t, kubetest.Options{ServiceCIDR: "10.222.0.0/16"})
	stateDir := t.TempDir()
	resources := filepath.Join(t.TempDir(), "resources.yml")
	if err := os.WriteFile(resources, []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: team-b}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: team-b}\ndata: {k: v}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"--config", "../../internal/install/testdata/cluster.yml", "--state-dir", stateDir, "--cluster-name", "kubetest", "--kubeconfig", cluster.Kubeconfig}

	code, _, errOut := runCLI(t, nil, append([]string{"bootstrap-phase", "install-deckhouse", "--skip-phase", "wait-platform"}, common...)...)
	if code != 0 {
		t.Fatalf("install-deckhouse: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{"Install the CNI", "Install CoreDNS", "Install the platform controller", "Store the cluster state in the cluster"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the phase tree does not show %s:\n%s", want, errOut)
		}
	}
	uuid, err := os.ReadFile(filepath.Join(stateDir, "kubetest", "cluster-uuid"))
	if err != nil || len(strings.TrimSpace(string(uuid))) != 36 {
		t.Errorf("no cluster UUID kept in the state dir: %q %v", uuid, err)
	}

	code, _, errOut = runCLI(t, nil, append([]string{"bootstrap-phase", "create-resources", "--resources", resources, "--resources-timeout", "30s"}, common...)...)
	if code != 0 {
		t.Fatalf("create-resources: exit %d\n%s", code, errOut)
	}

	code, _, errOut = runCLI(t, nil, append([]string{"bootstrap-phase", "install-deckhouse", "--only-phase", "wait-platform", "--deckhouse-timeout", "3s"}, common...)...)
	if code != 1 {
		t.Fatalf("wait-platform with no controller manager: exit %d, want 1\n%s", code, errOut)
	}
	for _, want := range []string{"Deployment d8-system/deckhouse", "is kube-controller-manager running?", "--deckhouse-timeout=3s"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the failure does not say %q:\n%s", want, errOut)
		}
	}
}

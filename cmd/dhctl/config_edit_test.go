package main

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/kubetest"
)

// `dhctl config edit` against a real API server, the editor a real program (sed): a valid edit
// is saved; one that changes a subnet, or breaks a schema, is refused and kept in a 0600 file;
// no change saves nothing; a held lock refuses.
func TestConfigEdit(t *testing.T) {
	cluster := kubetest.Start(t, kubetest.Options{})
	k, err := kube.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := config.Load(ctx, config.LoadOptions{ConfigPaths: []string{"../../examples/static-cluster.yml"}})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := clusterstate.Objects(clusterstate.Contents{Cluster: c, UUID: "0b8ad3c4-6c35-4d7b-9a53-9f6f8e1f2a11"})
	if err != nil {
		t.Fatal(err)
	}
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": kube.LockNamespace}}}
	if _, err := k.ApplyAll(ctx, append(objs, ns), kube.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	stored := func(name, key string) string {
		s, err := k.Typed().CoreV1().Secrets("kube-system").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(s.Data[key])
	}
	kc := "--kubeconfig=" + cluster.Kubeconfig
	edit := func(editor, doc string) (int, string, string) {
		return runCLI(t, map[string]string{"EDITOR": editor}, "config", "edit", doc, kc)
	}

	code, out, errOut := edit("sed -i s#192.168.199.0/24#192.168.200.0/24#", "static-cluster-configuration")
	if code != 0 || !strings.Contains(out, "static-cluster-configuration saved") ||
		!strings.Contains(stored(clusterstate.StaticConfigurationSecret, clusterstate.StaticConfigurationKey), "192.168.200.0/24") {
		t.Fatalf("a valid edit: exit %d\n%s\n%s", code, out, errOut)
	}

	before := stored(clusterstate.ClusterConfigurationSecret, clusterstate.ClusterConfigurationKey)
	kept := regexp.MustCompile(`kept in (\S+) \(0600\)`)
	for _, tc := range []struct{ editor, want string }{
		{"sed -i s#10.111.0.0/16#10.112.0.0/16#", `ClusterConfiguration.podSubnetCIDR: "10.111.0.0/16" -> "10.112.0.0/16"`},
		{`sed -i s#clusterType:.*#clusterType:\ Sideways#`, "the edited cluster-configuration is not valid"},
	} {
		code, _, errOut := edit(tc.editor, "cluster-configuration")
		if code != 2 || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "nothing was saved") {
			t.Errorf("edit %q: exit %d, want 2 saying %q\n%s", tc.editor, code, tc.want, errOut)
		}
		m := kept.FindStringSubmatch(errOut)
		if m == nil {
			t.Errorf("edit %q: the kept file is not named:\n%s", tc.editor, errOut)
			continue
		}
		if fi, err := os.Stat(m[1]); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("the kept edit %s: %v %v", m[1], fi, err)
		}
		os.RemoveAll(strings.TrimSuffix(m[1], "/cluster-configuration.yaml"))
	}
	if stored(clusterstate.ClusterConfigurationSecret, clusterstate.ClusterConfigurationKey) != before {
		t.Error("a refused edit changed the stored ClusterConfiguration")
	}
	if code, out, _ := edit("true", "cluster-configuration"); code != 0 || !strings.Contains(out, "unchanged: nothing saved") {
		t.Errorf("no change: exit %d %q", code, out)
	}
	if code, _, errOut := edit("true", "provider-cluster-configuration"); code != 2 || !strings.Contains(errOut, "the cluster has no provider-cluster-configuration") {
		t.Errorf("a static cluster's provider configuration: exit %d %q", code, errOut)
	}

	if _, err := kube.AcquireLock(ctx, k.Typed(), "ops@laptop pid 4242 in pid:[1] (converge)", time.Minute); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := edit("sed -i s#192.168.200.0/24#192.168.201.0/24#", "static-cluster-configuration"); code != 1 || !strings.Contains(errOut, "locked by ops@laptop") {
		t.Errorf("edit while a converge holds the lock: exit %d %q", code, errOut)
	}
}

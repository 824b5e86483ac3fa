package install

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"testing/fstest"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/kubeadm"
	"github.com/dhctl-dev/dhctl/templates"
)

func testVersionMap(t testing.TB) *config.VersionMap {
	t.Helper()
	vm, err := config.LoadVersionMap(candi.FS)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

func TestRegistryValues(t *testing.T) {
	r, err := registryValues("10.0.0.1:5000/a/b", config.DeckhouseInit{RegistryScheme: "HTTP"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Address != "10.0.0.1:5000" || r.Path != "/a/b" || r.Scheme != "http" || r.DockerConfigJSON != `{"auths":{"10.0.0.1:5000":{}}}` {
		t.Errorf("anonymous registry: %+v", r)
	}
	cfg := base64.StdEncoding.EncodeToString([]byte(`{"auths":{"x":{"auth":"c2VjcmV0"}}}`))
	r, err = registryValues("x/y", config.DeckhouseInit{RegistryDockerCfg: cfg})
	if err != nil || r.DockerConfigJSON != `{"auths":{"x":{"auth":"c2VjcmV0"}}}` || r.Scheme != "https" {
		t.Errorf("with credentials: %+v %v", r, err)
	}
	_, err = registryValues("x/y", config.DeckhouseInit{RegistryDockerCfg: "not base64!"})
	if err == nil || !strings.Contains(err.Error(), "deckhouse.registryDockerCfg is not base64") || strings.Contains(err.Error(), "not base64!") {
		t.Errorf("bad docker config: %v (must name the field, never echo the value)", err)
	}
	_, err = registryValues("x/y", config.DeckhouseInit{RegistryDockerCfg: base64.StdEncoding.EncodeToString([]byte(`[1]`))})
	if err == nil || !strings.Contains(err.Error(), `"auths"`) {
		t.Errorf("not a docker config: %v", err)
	}
}

func enabled(name string, on bool, settings map[string]any) config.ModuleConfig {
	return config.ModuleConfig{Metadata: config.ObjectMeta{Name: name}, Spec: config.ModuleConfigSpec{Enabled: &on, Settings: settings}}
}

func TestChooseCNI(t *testing.T) {
	fsys := fstest.MapFS{"cni/flannel/a.yaml": {}, "cni/cilium/a.yaml": {}}
	for _, c := range []struct {
		name     string
		explicit string
		mcs      []config.ModuleConfig
		want     CNIValues
		err      string
	}{
		{name: "default", want: CNIValues{Name: "flannel", Backend: "vxlan"}},
		{name: "module config", mcs: []config.ModuleConfig{enabled("cni-cilium", true, nil)}, want: CNIValues{Name: "cilium", Backend: "vxlan"}},
		{name: "disabled module ignored", mcs: []config.ModuleConfig{enabled("cni-cilium", false, nil)}, want: CNIValues{Name: "flannel", Backend: "vxlan"}},
		{name: "host-gw", mcs: []config.ModuleConfig{enabled("cni-flannel", true, map[string]any{"podNetworkMode": "HostGW"})}, want: CNIValues{Name: "flannel", Backend: "host-gw"}},
		{name: "explicit", explicit: "cilium", want: CNIValues{Name: "cilium", Backend: "vxlan"}},
		{name: "two enabled", mcs: []config.ModuleConfig{enabled("cni-cilium", true, nil), enabled("cni-flannel", true, nil)}, err: "enable exactly one"},
		{name: "unknown", explicit: "calico", err: `CNI "calico" has no templates in this dhctl; available: cilium, flannel`},
		{name: "bad mode", mcs: []config.ModuleConfig{enabled("cni-flannel", true, map[string]any{"podNetworkMode": "Magic"})}, err: "settings.podNetworkMode"},
	} {
		got, err := chooseCNI(&config.Cluster{ModuleConfigs: c.mcs}, c.explicit, fsys)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: got %+v %v, want %+v", c.name, got, err, c.want)
		}
	}
}

// Every shipped template renders with full values into objects with a kind and a name.
func TestTemplatesRender(t *testing.T) {
	v := &Values{
		ImagesRepo: "r/x", Images: map[string]string{"flannel": "r/x/flannel:v", "coredns": "r/x/coredns:v", "platform": "r/x/p:v"},
		PodSubnetCIDR: "10.1.0.0/16", ServiceSubnetCIDR: "10.2.0.0/16", ClusterDomain: "cluster.local",
		CNI:      CNIValues{Name: "flannel", Backend: "vxlan"},
		DNS:      DNSValues{ClusterIP: "10.2.0.10", ReadinessPeriodSeconds: 2},
		Registry: RegistryValues{Address: "r", Path: "/x", Scheme: "https", CA: "ca", DockerConfigJSON: "{}"},
		Platform: PlatformValues{Port: 4222, ReadinessPath: "/readyz", LogLevel: "Info"},
	}
	total := 0
	for _, dir := range []string{"cni/flannel", "crds", "dns", "platform"} {
		objs, err := Render(templates.FS, dir, v)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		for _, o := range objs {
			if o.GetKind() == "" || o.GetAPIVersion() == "" {
				t.Errorf("%s: object %q without kind/apiVersion", dir, o.GetName())
			}
		}
		total += len(objs)
	}
	if total < 12 {
		t.Errorf("only %d objects rendered", total)
	}
	// A value the templates use but the values lack is an error naming the file, not "<no value>".
	bad := fstest.MapFS{"d/x.yaml": {Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Images.nope }}}\n")}}
	if _, err := Render(bad, "d", v); err == nil || !strings.Contains(err.Error(), "d/x.yaml") {
		t.Errorf("missing value: %v", err)
	}
}

func TestNewNeedsInitConfiguration(t *testing.T) {
	c := loadTestConfig(t, false)
	c.InitConfiguration = nil
	_, err := New(Options{Cluster: c, ClusterUUID: testUUID, Connect: nil, Kube: nil})
	if err == nil {
		t.Fatal("accepted options without a client")
	}
	_, err = newValues(c, testVersionMap(t), "", "", "", templates.FS)
	if err == nil || !strings.Contains(err.Error(), "InitConfiguration") {
		t.Errorf("no InitConfiguration: %v", err)
	}
}

// CoreDNS is dhctl's to install: its Service has the address every kubelet is told to use, it
// keeps kubeadm's names and selector, and its readiness is asked often enough not to hold a
// bootstrap; kubeadm is told not to install its own.
func TestCoreDNSIsWhereTheKubeletsLook(t *testing.T) {
	c := loadTestConfig(t, false)
	vm := testVersionMap(t)
	in, err := New(Options{Cluster: c, VersionMap: vm, ClusterUUID: testUUID, Connect: func(context.Context) (*kube.Client, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	kc, err := kubeadm.FromConfig(c, vm, "10.0.0.11")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := kubeadm.Init(kc, kubeadm.Node{Name: "master-0", IP: "10.0.0.11"}, kubeadm.Secrets{Token: "abcdef.0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	var kubeletDNS string
	for _, doc := range strings.Split(string(docs), "\n---\n") {
		var d struct {
			Kind       string   `json:"kind"`
			ClusterDNS []string `json:"clusterDNS"`
			DNS        struct {
				Disabled bool `json:"disabled"`
			} `json:"dns"`
		}
		if err := sigsyaml.Unmarshal([]byte(doc), &d); err != nil {
			t.Fatal(err)
		}
		switch d.Kind {
		case "KubeletConfiguration":
			kubeletDNS = strings.Join(d.ClusterDNS, ",")
		case "ClusterConfiguration":
			if !d.DNS.Disabled {
				t.Error("kubeadm would install its own CoreDNS beside dhctl's: dns.disabled is not set")
			}
		}
	}
	objs, err := in.DNSObjects()
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		byKind[o.GetKind()] = o
	}
	svc, dep := byKind["Service"], byKind["Deployment"]
	if svc == nil || dep == nil || byKind["ConfigMap"] == nil || byKind["ClusterRole"] == nil {
		t.Fatalf("CoreDNS objects: %v", byKind)
	}
	if ip, _, _ := unstructured.NestedString(svc.Object, "spec", "clusterIP"); ip == "" || ip != kubeletDNS {
		t.Errorf("kube-dns Service at %q, the kubelets ask %q", ip, kubeletDNS)
	}
	if svc.GetName() != "kube-dns" || dep.GetName() != "coredns" || dep.GetNamespace() != "kube-system" {
		t.Errorf("not kubeadm's names: Service %s, Deployment %s/%s", svc.GetName(), dep.GetNamespace(), dep.GetName())
	}
	if sel, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "selector", "matchLabels"); sel["k8s-app"] != "kube-dns" || len(sel) != 1 {
		t.Errorf("selector %v: kubeadm's is k8s-app=kube-dns (a selector cannot change on an existing Deployment)", sel)
	}
	containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("containers: %v", containers)
	}
	ctr := containers[0].(map[string]any)
	if period, _, _ := unstructured.NestedInt64(ctr, "readinessProbe", "periodSeconds"); period < 1 || period > 3 {
		t.Errorf("readiness probe every %d s: a bootstrap waits up to that long after CoreDNS is ready", period)
	}
	if img := ctr["image"]; img != in.Values().NodeImagesRepo+"/coredns:v1.12.0" {
		t.Errorf("image %v", img)
	}
	targets, err := in.WaitTargets()
	if err != nil {
		t.Fatal(err)
	}
	var waited []string
	for _, o := range targets {
		waited = append(waited, kube.Ref(o))
	}
	if !strings.Contains(strings.Join(waited, " "), "Deployment kube-system/coredns") {
		t.Errorf("wait-platform does not wait for CoreDNS: %v", waited)
	}
}

// flanneld reaches the API server at the control-plane endpoint when one is known (the address
// the kubelets and kube-proxy use), and through the kubernetes Service only when none is.
func TestFlannelReachesTheAPIServerWhereTheKubeletsDo(t *testing.T) {
	c := loadTestConfig(t, false)
	vm := testVersionMap(t)
	kc, err := kubeadm.FromConfig(c, vm, "10.0.0.11")
	if err != nil {
		t.Fatal(err)
	}
	env := func(endpoint func() (string, error)) map[string]string {
		t.Helper()
		in, err := New(Options{Cluster: c, VersionMap: vm, ClusterUUID: testUUID, ControlPlaneEndpoint: endpoint,
			Connect: func(context.Context) (*kube.Client, error) { return nil, nil }})
		if err != nil {
			t.Fatal(err)
		}
		objs, err := in.CNIObjects()
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if o.GetKind() != "DaemonSet" {
				continue
			}
			containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			out := map[string]string{}
			for _, e := range containers[0].(map[string]any)["env"].([]any) {
				e := e.(map[string]any)
				if v, ok := e["value"].(string); ok {
					out[e["name"].(string)] = v
				}
			}
			return out
		}
		t.Fatal("no DaemonSet in the CNI")
		return nil
	}
	got := env(func() (string, error) { return kc.ControlPlaneEndpoint, nil })
	if got["KUBERNETES_SERVICE_HOST"] != "10.0.0.11" || got["KUBERNETES_SERVICE_PORT"] != "6443" {
		t.Errorf("with the control-plane endpoint %s: env %v", kc.ControlPlaneEndpoint, got)
	}
	for _, none := range []func() (string, error){nil, func() (string, error) { return "", nil }} {
		if got := env(none); got["KUBERNETES_SERVICE_HOST"] != "" {
			t.Errorf("with no endpoint: env %v, want the kubernetes Service's (set by the kubelet)", got)
		}
	}
	in, err := New(Options{Cluster: c, VersionMap: vm, ClusterUUID: testUUID, ControlPlaneEndpoint: func() (string, error) { return "10.0.0.11", nil },
		Connect: func(context.Context) (*kube.Client, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.CNIObjects(); err == nil || !strings.Contains(err.Error(), "not host:port") {
		t.Errorf("an endpoint without a port: %v", err)
	}
}

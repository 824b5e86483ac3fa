package kubeadm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/dhctl-dev/dhctl/e2e/artifacts"
	"github.com/dhctl-dev/dhctl/internal/kubetest"
)

func testCluster() Cluster {
	return Cluster{
		KubernetesVersion:    "1.33.13",
		ImageRepository:      "registry.example.com:5000/dhctl/",
		ControlPlaneEndpoint: "10.0.0.11:6443",
		PodSubnet:            "10.111.0.0/16",
		NodeCIDRMaskSize:     25,
		ServiceSubnet:        "10.222.0.0/16",
		ClusterDomain:        "cluster.local",
		KubeProxyOverrides:   map[string]any{"apiVersion": KubeProxyAPIVersion, "kind": "KubeProxyConfiguration", "conntrack": map[string]any{"maxPerCore": 0}},
	}
}

const testToken = "abcdef.0123456789abcdef"
const testKey = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestInitDocuments(t *testing.T) {
	out, err := Init(testCluster(), Node{Name: "master-0", IP: "10.0.0.11"}, Secrets{Token: testToken, CertificateKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{
		"kind: InitConfiguration", "kind: ClusterConfiguration", "kind: KubeletConfiguration", "kind: KubeProxyConfiguration",
		"apiVersion: kubeadm.k8s.io/v1beta4", "kubernetesVersion: v1.33.13", "imageRepository: registry.example.com:5000/dhctl\n",
		"controlPlaneEndpoint: 10.0.0.11:6443", "podSubnet: 10.111.0.0/16", "serviceSubnet: 10.222.0.0/16", "dnsDomain: cluster.local", "dns:\n  disabled: true",
		"dataDir: /var/lib/etcd", "- master-0", "advertiseAddress: 10.0.0.11", "token: " + testToken,
		"clusterDNS:\n- 10.222.0.10", "cgroupDriver: systemd", "maxPerCore: 0", "mode: iptables", "clusterCIDR: 10.111.0.0/16",
		"name: node-ip\n    value: 10.0.0.11",
		"controllerManager:\n  extraArgs:\n  - name: node-cidr-mask-size\n    value: \"25\"",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("init documents lack %q:\n%s", want, s)
		}
	}
	if strings.Count(s, "\n---\n") != 3 {
		t.Errorf("want 4 documents:\n%s", s)
	}
}

func TestJoinDocuments(t *testing.T) {
	j := JoinInfo{APIServerEndpoint: "10.0.0.11:6443", Token: testToken, CACertHash: "sha256:" + strings.Repeat("ab", 32), CertificateKey: testKey}
	out, err := Join(testCluster(), Node{IP: "10.0.0.12"}, j, false)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(out); !strings.Contains(s, "kind: JoinConfiguration") || strings.Contains(s, "controlPlane") || !strings.Contains(s, "apiServerEndpoint: 10.0.0.11:6443") {
		t.Errorf("worker join:\n%s", s)
	}
	out, err = Join(testCluster(), Node{IP: "10.0.0.13"}, j, true)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(out); !strings.Contains(s, "certificateKey: "+testKey) || !strings.Contains(s, "advertiseAddress: 10.0.0.13") {
		t.Errorf("control-plane join:\n%s", s)
	}
}

func TestBadInput(t *testing.T) {
	good := Secrets{Token: testToken}
	for name, tc := range map[string]struct {
		mut  func(*Cluster, *Node, *Secrets)
		want string
	}{
		"pod cidr":  {func(c *Cluster, _ *Node, _ *Secrets) { c.PodSubnet = "10.111.0.0" }, "podSubnetCIDR"},
		"node mask": {func(c *Cluster, _ *Node, _ *Secrets) { c.NodeCIDRMaskSize = 16 }, "podSubnetNodeCIDRPrefix /16 does not fit"},
		"repo":      {func(c *Cluster, _ *Node, _ *Secrets) { c.ImageRepository = "" }, "imagesRepo"},
		"endpoint":  {func(c *Cluster, _ *Node, _ *Secrets) { c.ControlPlaneEndpoint = "10.0.0.1" }, "not host:port"},
		"loopback":  {func(_ *Cluster, n *Node, _ *Secrets) { n.IP = "127.0.0.1" }, "loopback"},
		"token":     {func(_ *Cluster, _ *Node, s *Secrets) { s.Token = "ABC.def" }, "abcdef.0123456789abcdef"},
		"cgroup":    {func(c *Cluster, _ *Node, _ *Secrets) { c.CgroupDriver = "x" }, "cgroup driver"},
		"dns range": {func(c *Cluster, _ *Node, _ *Secrets) { c.ServiceSubnet = "10.0.0.0/30" }, "too small"},
	} {
		c, n, s := testCluster(), Node{IP: "10.0.0.11"}, good
		tc.mut(&c, &n, &s)
		if _, err := Init(c, n, s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
	if _, err := Join(testCluster(), Node{IP: "10.0.0.12"}, JoinInfo{APIServerEndpoint: "10.0.0.11:6443", Token: testToken, CACertHash: "md5:x"}, false); err == nil || !strings.Contains(err.Error(), "ca.crt") {
		t.Errorf("bad CA hash: %v", err)
	}
}

// With the CA certificate in the join data, a node discovers the cluster from a kubeconfig
// holding the endpoint and that CA, and its kubelet bootstraps with the token; a CA that is not
// the one the hash names is refused.
func TestJoinWithTheCADiscoversFromAFile(t *testing.T) {
	ca := kubetest.NewCAPEM(t)
	hash, err := CACertHash(ca)
	if err != nil {
		t.Fatal(err)
	}
	j := JoinInfo{APIServerEndpoint: "10.0.0.11:6443", Token: testToken, CACertHash: hash, CACert: string(ca)}
	out, err := Join(testCluster(), Node{IP: "10.0.0.12"}, j, false)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{"kubeConfigPath: " + DiscoveryKubeconfigPath, "tlsBootstrapToken: " + testToken} {
		if !strings.Contains(s, want) {
			t.Errorf("the JoinConfiguration lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "bootstrapToken:") {
		t.Errorf("both discoveries given (kubeadm refuses that):\n%s", s)
	}
	kc, err := DiscoveryKubeconfig(j)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load(kc)
	if err != nil {
		t.Fatalf("the discovery kubeconfig does not load: %v\n%s", err, kc)
	}
	cluster := cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster]
	if cluster == nil || cluster.Server != "https://10.0.0.11:6443" || string(cluster.CertificateAuthorityData) != string(ca) {
		t.Errorf("discovery kubeconfig: %+v", cluster)
	}
	if err := clientcmd.ConfirmUsable(*cfg, ""); err != nil {
		t.Errorf("kubeadm cannot use the discovery kubeconfig: %v\n%s", err, kc)
	}
	if u := cfg.AuthInfos[cfg.Contexts[cfg.CurrentContext].AuthInfo]; u == nil || u.Token != "" || u.ClientCertificateData != nil || strings.Contains(string(kc), testToken) {
		t.Errorf("the discovery kubeconfig holds credentials:\n%s", kc)
	}

	other := j
	other.CACert = string(kubetest.NewCAPEM(t))
	if _, err := Join(testCluster(), Node{IP: "10.0.0.12"}, other, false); err == nil || !strings.Contains(err.Error(), "different clusters") {
		t.Errorf("a CA another than the hash names: %v", err)
	}
	if _, err := DiscoveryKubeconfig(other); err == nil {
		t.Error("DiscoveryKubeconfig took a CA another than the hash names")
	}
	if kc, err := DiscoveryKubeconfig(JoinInfo{APIServerEndpoint: "10.0.0.11:6443", CACertHash: hash}); kc != nil || err != nil {
		t.Errorf("without a CA: %q, %v; want nothing (token discovery)", kc, err)
	}
}

func TestSecretsAndCAHash(t *testing.T) {
	s, err := NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	if validateToken(s.Token) != nil || !isHex(s.CertificateKey, 64) {
		t.Errorf("bad secrets %q", s.Token)
	}
	h, err := CACertHash(kubetest.NewCAPEM(t))
	if err != nil || !strings.HasPrefix(h, "sha256:") || len(h) != 71 {
		t.Errorf("hash %q %v", h, err)
	}
	if _, err := CACertHash([]byte("nope")); err == nil {
		t.Error("garbage accepted as a CA")
	}
}

// TestKubeadmValidates runs the real kubeadm (built by e2e/artifacts, cached) on every generated
// configuration: init, worker join and control-plane join.
func TestKubeadmValidates(t *testing.T) {
	kubeadm := KubeadmBinary(t)
	j := JoinInfo{APIServerEndpoint: "10.0.0.11:6443", Token: testToken, CACertHash: "sha256:" + strings.Repeat("ab", 32), CertificateKey: testKey}
	docs := map[string]func() ([]byte, error){
		"init": func() ([]byte, error) {
			return Init(testCluster(), Node{Name: "m0", IP: "10.0.0.11"}, Secrets{Token: testToken, CertificateKey: testKey})
		},
		"join-worker": func() ([]byte, error) {
			taints := []Taint{{Key: "dedicated.example.com/role", Value: "edge", Effect: "PreferNoSchedule"}}
			return Join(testCluster(), Node{IP: "10.0.0.12", Labels: map[string]string{"node.deckhouse.io/group": "worker", "tier": "edge"}, Taints: &taints}, j, false)
		},
		"join-control-plane": func() ([]byte, error) { return Join(testCluster(), Node{IP: "10.0.0.13"}, j, true) },
		"join-file-discovery": func() ([]byte, error) {
			jf := j
			ca := kubetest.NewCAPEM(t)
			jf.CACert = string(ca)
			jf.CACertHash, _ = CACertHash(ca)
			out, err := Join(testCluster(), Node{IP: "10.0.0.13"}, jf, true)
			if err != nil {
				return nil, err
			}
			// kubeadm checks that the discovery file exists: the bundle writes it there.
			kc, err := DiscoveryKubeconfig(jf)
			if err != nil {
				return nil, err
			}
			path := filepath.Join(t.TempDir(), "discovery.conf")
			if err := os.WriteFile(path, kc, 0o600); err != nil {
				return nil, err
			}
			return []byte(strings.ReplaceAll(string(out), DiscoveryKubeconfigPath, path)), nil
		},
	}
	for name, gen := range docs {
		out, err := gen()
		if err != nil {
			t.Fatal(err)
		}
		ValidateWithKubeadm(t, kubeadm, name, out)
	}
}

// KubeadmBinary returns the rig's kubeadm v1.33.13 (built once, cached outside the checkout).
func KubeadmBinary(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	bins, err := artifacts.Build(ctx, artifacts.Options{Logf: t.Logf}, artifacts.Kubernetes)
	if err != nil {
		t.Fatalf("building kubeadm for `kubeadm config validate`: %v", err)
	}
	return bins["kubeadm"]
}

// ValidateWithKubeadm runs `kubeadm config validate` on one configuration.
func ValidateWithKubeadm(t testing.TB, kubeadm, name string, cfg []byte) {
	t.Helper()
	f := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(f, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, kubeadm, "config", "validate", "--config", f).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Errorf("kubeadm config validate %s: %v\n%s\n--- config ---\n%s", name, err, out, cfg)
	}
	if strings.Contains(strings.ToLower(string(out)), "unknown field") || strings.Contains(string(out), "W") && strings.Contains(string(out), "strict decoding") {
		t.Errorf("kubeadm config validate %s warns:\n%s", name, out)
	}
}

func TestFromConfigOverrides(t *testing.T) {
	if !IsComponentConfig(KubeProxyAPIVersion, "KubeProxyConfiguration") || !IsComponentConfig(KubeletAPIVersion, "KubeletConfiguration") || IsComponentConfig("v1", "ConfigMap") {
		t.Error("IsComponentConfig")
	}
	c := testCluster()
	c.KubeletOverrides = map[string]any{"maxPods": 50, "metadata": map[string]any{"name": "x"}}
	out, err := Init(c, Node{IP: "10.0.0.11"}, Secrets{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	if s := string(out); !strings.Contains(s, "maxPods: 50") || strings.Contains(s, "name: x") || !strings.Contains(s, "cgroupDriver: systemd") {
		t.Errorf("kubelet override not merged over the defaults:\n%s", s)
	}
}

func TestKubeletMaySetLabel(t *testing.T) {
	for key, want := range map[string]bool{
		"node.deckhouse.io/group": true, "tier": true, "example.com/x": true,
		"node.kubernetes.io/instance-type": true, "kubelet.kubernetes.io/x": true, "topology.kubernetes.io/zone": true,
		"node-role.kubernetes.io/worker": false, "kubernetes.io/role": false, "k8s.io/x": false, "sub.k8s.io/x": false,
	} {
		if got := KubeletMaySetLabel(key); got != want {
			t.Errorf("KubeletMaySetLabel(%q) = %v, want %v", key, got, want)
		}
	}
}

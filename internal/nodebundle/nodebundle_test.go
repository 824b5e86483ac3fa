package nodebundle

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/inventory"
	"github.com/dhctl-dev/dhctl/internal/kubeadm"
	"github.com/dhctl-dev/dhctl/internal/kubetest"
	"github.com/dhctl-dev/dhctl/internal/node"
)

const override = `kubernetes:
  "1.33":
    packages:
      kubelet: {version: v1.33.13, files: [{name: kubelet, sha256: 1111111111111111111111111111111111111111111111111111111111111111}]}
      kubeadm: {version: v1.33.13, files: [{name: kubeadm, sha256: 2222222222222222222222222222222222222222222222222222222222222222}]}
      kubectl: {version: v1.33.13, files: [{name: kubectl, sha256: 3333333333333333333333333333333333333333333333333333333333333333}]}
`

func load(t *testing.T) (*config.Cluster, *config.VersionMap) {
	t.Helper()
	c, err := config.Load(context.Background(), config.LoadOptions{ConfigPaths: []string{"../../examples/static-cluster.yml"}})
	if err != nil {
		t.Fatal(err)
	}
	vm, err := config.LoadVersionMap(candi.FS)
	if err != nil {
		t.Fatal(err)
	}
	return c, vm
}

func TestPlanUsesBuiltInKubeletSum(t *testing.T) {
	c, vm := load(t)
	p, err := NewPlan(candi.FS, c, vm, "192.168.199.10")
	if err != nil {
		t.Fatal(err)
	}
	rel, _ := vm.Release("1.33")
	want := rel.Packages["kubelet"].SHA256
	for _, pkg := range p.Packages {
		if pkg.Name == "kubelet" && (len(pkg.Files) != 1 || pkg.Files[0].SHA256 != want || want == "") {
			t.Errorf("kubelet = %+v, want the built-in sha256 %q", pkg, want)
		}
	}
}

func TestPlanNeedsVerifiedKubelet(t *testing.T) {
	c, vm := load(t)
	delete(vm.Kubernetes["1.33"].Packages, "kubelet") // a map (or minor) without a verified kubelet
	if _, err := NewPlan(candi.FS, c, vm, "192.168.199.10"); err == nil || !strings.Contains(err.Error(), `no package "kubelet"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestPlanRendersMasterAndWorker(t *testing.T) {
	c, vm := load(t)
	o, err := config.ParseVersionMapOverride([]byte(override))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(candi.FS, c, vm.WithOverride(o), "192.168.199.10")
	if err != nil {
		t.Fatal(err)
	}
	if p.Sandbox != "registry.example.com/deckhouse/ce/pause:3.10" || p.Registry.User != "user" || p.Registry.Password != "password" {
		t.Errorf("plan: sandbox %q registry %+v", p.Sandbox, *p.Registry)
	}
	if got := []string{p.Packages[0].Name, p.Packages[1].Name}; got[0] != "runc" || got[1] != "containerd" {
		t.Errorf("install order starts with %v; runc must come before containerd", got)
	}
	p.PlatformImage = "registry.example.com/deckhouse/ce:v1.70.3"
	s, _ := kubeadm.NewSecrets()
	host := node.Host{Family: node.Debian, Hostname: "m0", CgroupDriver: "systemd"}
	b, d, err := p.Render(Target{IP: "192.168.199.10", Role: inventory.Master, Init: true, Host: host}, s, kubeadm.JoinInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Init || !strings.Contains(d.KubeadmConfig, "kind: InitConfiguration") || len(b.Steps) != 8 {
		t.Errorf("master: init=%v steps=%d", d.Init, len(b.Steps))
	}
	join := kubeadm.JoinInfo{APIServerEndpoint: p.Kubeadm.ControlPlaneEndpoint, Token: s.Token, CACertHash: "sha256:" + strings.Repeat("ab", 32)}
	_, d, err = p.Render(Target{IP: "192.168.199.11", Role: inventory.Worker, Host: host}, kubeadm.Secrets{}, join)
	if err != nil {
		t.Fatal(err)
	}
	if d.Init || !strings.Contains(d.KubeadmConfig, "apiServerEndpoint: 192.168.199.10:6443") {
		t.Errorf("worker: %s", d.KubeadmConfig)
	}
	wb, _, _ := p.Render(Target{IP: "192.168.199.11", Role: inventory.Worker, Host: host}, kubeadm.Secrets{}, join)
	// Each machine pulls, while it is prepared, the images it will run and no others.
	pulls := func(b *node.Bundle) string {
		for _, st := range b.Steps {
			if st.Name == "045_images" {
				return string(st.Script)
			}
		}
		t.Fatal("no 045_images step")
		return ""
	}
	repo := "registry.example.com/deckhouse/ce/"
	master, worker := pulls(b), pulls(wb)
	for _, img := range []string{"pause:3.10", "kube-proxy:v1.33.13", "flannel:v0.26.7", "coredns:v1.12.0"} {
		if !strings.Contains(master, "'"+repo+img+"'") || !strings.Contains(worker, "'"+repo+img+"'") {
			t.Errorf("%s is not pulled by both machines", img)
		}
	}
	for _, img := range []string{repo + "kube-apiserver:v1.33.13", repo + "etcd:3.5.24-0", p.PlatformImage} {
		if !strings.Contains(master, "'"+img+"'") || strings.Contains(worker, "'"+img+"'") {
			t.Errorf("%s: want it pulled by control-plane nodes only", img)
		}
	}
	// The first master pulls at once; the others once its API server answers.
	if wait := "/dev/tcp/192.168.199.10/6443"; strings.Contains(master, wait) || !strings.Contains(worker, wait) {
		t.Errorf("want only the non-first nodes to wait for %s before pulling:\nmaster:\n%s\nworker:\n%s", wait, master, worker)
	}
	if !strings.Contains(master, "9>&-") || !strings.Contains(master, "setsid -f") {
		t.Errorf("the pulls must run detached, without the bundle's lock descriptor:\n%s", master)
	}
}

// A machine prepared before the cluster exists runs exactly the scripts its bundle runs later
// (which then skips them): the steps before kubeadm's do not depend on the join data.
func TestPreparationIsTheBundlesFirstSteps(t *testing.T) {
	c, vm := load(t)
	o, err := config.ParseVersionMapOverride([]byte(override))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(candi.FS, c, vm.WithOverride(o), "192.168.199.10")
	if err != nil {
		t.Fatal(err)
	}
	host := node.Host{Family: node.Debian, Hostname: "w0", CgroupDriver: "systemd"}
	render := func(token, hash string) *node.Bundle {
		join := kubeadm.JoinInfo{APIServerEndpoint: p.Kubeadm.ControlPlaneEndpoint, Token: token, CACertHash: "sha256:" + strings.Repeat(hash, 32)}
		b, _, err := p.Render(Target{IP: "192.168.199.11", Role: inventory.Worker, Host: host}, kubeadm.Secrets{}, join)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	early, later := render("abcdef.0123456789abcdef", "00").Preparation(), render("zyxwvu.9876543210zyxwvu", "ab")
	if len(early.Steps) != len(later.Steps)-1 {
		t.Fatalf("preparation has %d steps, the bundle %d", len(early.Steps), len(later.Steps))
	}
	for i, s := range early.Steps {
		if s.Name >= node.KubeadmStep || s.Name != later.Steps[i].Name || !bytes.Equal(s.Script, later.Steps[i].Script) {
			t.Errorf("step %s of the preparation differs from the bundle's %s", s.Name, later.Steps[i].Name)
		}
	}
	if last := later.Steps[len(later.Steps)-1]; last.Name != node.KubeadmStep || bytes.Equal(last.Script, render("abcdef.0123456789abcdef", "00").Steps[len(later.Steps)-1].Script) {
		t.Errorf("the kubeadm step should carry the join data: %s", last.Name)
	}
}

// A node registers with its group's label, the nodeTemplate labels a kubelet may set itself and
// the nodeTemplate's taints; labels only the API may set (node-role.kubernetes.io/...) are not
// given to the kubelet, which would refuse to start.
func TestRenderRegistersTheNodeGroup(t *testing.T) {
	c, vm := load(t)
	o, err := config.ParseVersionMapOverride([]byte(override))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(candi.FS, c, vm.WithOverride(o), "192.168.199.10")
	if err != nil {
		t.Fatal(err)
	}
	host := node.Host{Family: node.Debian, Hostname: "w0", CgroupDriver: "systemd"}
	join := kubeadm.JoinInfo{APIServerEndpoint: "192.168.199.10:6443", Token: "abcdef.0123456789abcdef", CACertHash: "sha256:" + strings.Repeat("ab", 32)}
	_, d, err := p.Render(Target{IP: "192.168.199.11", Role: inventory.Worker, Host: host}, kubeadm.Secrets{}, join)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"name: node-labels\n    value: node.deckhouse.io/group=worker", "key: dedicated.example.com/role", "value: worker", "effect: PreferNoSchedule"} {
		if !strings.Contains(d.KubeadmConfig, want) {
			t.Errorf("worker registration lacks %q:\n%s", want, d.KubeadmConfig)
		}
	}
	if strings.Contains(d.KubeadmConfig, "node-role.kubernetes.io/worker") {
		t.Errorf("a label the kubelet may not set is given to it:\n%s", d.KubeadmConfig)
	}
	s, _ := kubeadm.NewSecrets()
	_, d, err = p.Render(Target{IP: "192.168.199.10", Role: inventory.Master, Init: true, Host: host}, s, kubeadm.JoinInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d.KubeadmConfig, "value: node.deckhouse.io/group=master\n") || !strings.Contains(d.KubeadmConfig, "key: node-role.kubernetes.io/control-plane") {
		t.Errorf("master registration:\n%s", d.KubeadmConfig)
	}
	// A cloud machine's group comes from the inventory.
	_, d, err = p.Render(Target{IP: "192.168.199.12", Role: inventory.Worker, Host: host, Group: "frontend"}, kubeadm.Secrets{}, join)
	if err != nil || !strings.Contains(d.KubeadmConfig, "node.deckhouse.io/group=frontend") || strings.Contains(d.KubeadmConfig, "taints") {
		t.Errorf("group frontend (no NodeGroup document): %v\n%s", err, d.KubeadmConfig)
	}
}

// A join whose data carry the cluster CA writes the discovery kubeconfig (endpoint and CA, no
// token) before kubeadm join, and kubeadm reads it: the node does not wait for the bootstrap
// signer to sign cluster-info with its token.
func TestJoinStepWritesTheDiscoveryKubeconfig(t *testing.T) {
	c, vm := load(t)
	p, err := NewPlan(candi.FS, c, vm, "192.168.199.10")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := kubeadm.NewSecrets()
	ca := string(kubetest.NewCAPEM(t))
	hash, _ := kubeadm.CACertHash([]byte(ca))
	join := kubeadm.JoinInfo{APIServerEndpoint: p.Kubeadm.ControlPlaneEndpoint, Token: s.Token, CACertHash: hash, CACert: ca}
	host := node.Host{Family: node.Debian, Hostname: "w0", CgroupDriver: "systemd"}
	b, d, err := p.Render(Target{IP: "192.168.199.11", Role: inventory.Worker, Host: host}, kubeadm.Secrets{}, join)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d.KubeadmConfig, "kubeConfigPath: "+kubeadm.DiscoveryKubeconfigPath) {
		t.Errorf("the JoinConfiguration does not read the discovery file:\n%s", d.KubeadmConfig)
	}
	var script string
	for _, st := range b.Steps {
		if st.Name == "060_kubeadm" {
			script = string(st.Script)
		}
	}
	write := strings.Index(script, "write_file "+kubeadm.DiscoveryKubeconfigPath+" 0600")
	if write < 0 || !strings.Contains(script, "certificate-authority-data: ") || !strings.Contains(script, "server: https://192.168.199.10:6443") {
		t.Fatalf("step 060 does not write the discovery kubeconfig:\n%s", script)
	}
	if join := strings.Index(script, "kubeadm join --config"); join < write {
		t.Errorf("kubeadm join runs before the discovery kubeconfig is written")
	}
	if strings.Count(script, s.Token) != 1 {
		t.Errorf("the token is in step 060 %d times, want once (in the JoinConfiguration only)", strings.Count(script, s.Token))
	}

	// Join data without the CA (saved by an earlier dhctl) still join, by token discovery.
	join.CACert = ""
	b, d, err = p.Render(Target{IP: "192.168.199.11", Role: inventory.Worker, Host: host}, kubeadm.Secrets{}, join)
	if err != nil || !strings.Contains(d.KubeadmConfig, "caCertHashes") || d.DiscoveryKubeconfig != "" {
		t.Errorf("without the CA: %v\n%s", err, d.KubeadmConfig)
	}
	for _, st := range b.Steps {
		if st.Name == "060_kubeadm" && strings.Contains(string(st.Script), kubeadm.DiscoveryKubeconfigPath) {
			t.Errorf("without the CA, step 060 still writes a discovery kubeconfig")
		}
	}
}

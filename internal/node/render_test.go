package node

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/internal/inventory"
)

func sampleData(family OSFamily, role inventory.Role, init bool) Data {
	return Data{
		NodeName: "node-1", NodeIP: "10.0.0.11", Role: role, Init: init, UploadCerts: init,
		OSFamily: family, KubernetesVersion: "1.33.13", CgroupDriver: "systemd",
		Packages: []Package{
			{Name: "runc", Version: "1.3.4", Dest: "/usr/local/sbin", Files: []PackageFile{{Name: "runc", SHA256: strings.Repeat("a", 64)}}, Runtime: true},
			{Name: "cni-plugins", Version: "v1.7.1", Dest: "/opt/cni/bin", Files: []PackageFile{{Name: "bridge", SHA256: strings.Repeat("b", 64)}, {Name: "loopback", SHA256: strings.Repeat("c", 64)}}},
		},
		Registry:      &Registry{Host: "registry.example.com:5000", Scheme: "https", CA: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", User: "u", Password: `p"a'ss$word`},
		SandboxImage:  "registry.example.com:5000/dhctl/pause:3.10",
		Proxy:         &Proxy{HTTP: "http://user:secret@proxy:3128", HTTPS: "http://proxy:3128", NoProxy: "127.0.0.1,.cluster.local"},
		ClusterDomain: "cluster.local", PodSubnet: "10.111.0.0/16", ServiceSubnet: "10.222.0.0/16",
		KubeadmConfig:        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\n",
		ControlPlaneEndpoint: "10.0.0.10:6443",
	}
}

type combo struct {
	family OSFamily
	role   inventory.Role
	init   bool
}

func combos() []combo {
	var out []combo
	for _, f := range Families() {
		out = append(out, combo{f, inventory.Master, true}, combo{f, inventory.Master, false}, combo{f, inventory.Worker, false})
	}
	return out
}

func (c combo) String() string {
	s := string(c.family) + "-" + string(c.role)
	if c.init {
		s += "-init"
	}
	return s
}

func TestRenderOrderAndContent(t *testing.T) {
	b, err := Render(candi.FS, sampleData(Debian, inventory.Master, true))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range b.Steps {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "010_checks,020_base_settings,030_runtime_packages,040_containerd,045_images,047_kubernetes_packages,050_kubelet,060_kubeadm" {
		t.Errorf("steps = %s", got)
	}
	all := map[string]string{}
	for _, s := range b.Steps {
		all[s.Name] = string(s.Script)
	}
	for step, want := range map[string]string{
		"030_runtime_packages":    "install_package 'runc' '1.3.4' '/usr/local/sbin' 'runc' '" + strings.Repeat("a", 64) + "'",
		"047_kubernetes_packages": "install_package 'cni-plugins' 'v1.7.1' '/opt/cni/bin' 'bridge' '" + strings.Repeat("b", 64) + "' 'loopback'",
		"040_containerd":          `password = "p\"a'ss$word"`,
		"060_kubeadm":             "kubeadm init --config /etc/kubernetes/dhctl/kubeadm.yaml --skip-token-print --upload-certs --skip-certificate-key-print",
		"010_checks":              "ports=(6443 2379 2380 10250 10257 10259 )",
	} {
		if !strings.Contains(all[step], want) {
			t.Errorf("%s lacks %q:\n%s", step, want, all[step])
		}
	}
	// kubeadm's output stays in the step's log on the node: it must not print the secrets.
	for _, line := range strings.Split(all["060_kubeadm"], "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "kubeadm init") {
			continue
		}
		if (!strings.Contains(line, " phase ") || strings.Contains(line, "bootstrap-token")) && !strings.Contains(line, "--skip-token-print") {
			t.Errorf("kubeadm would print the bootstrap token: %s", line)
		}
		if strings.Contains(line, "--upload-certs") && !strings.Contains(line, "--skip-certificate-key-print") {
			t.Errorf("kubeadm would print the certificate key: %s", line)
		}
	}
	if strings.Contains(all["047_kubernetes_packages"], "'runc'") || strings.Contains(all["030_runtime_packages"], "'cni-plugins'") {
		t.Errorf("a package in the wrong step:\n%s\n%s", all["030_runtime_packages"], all["047_kubernetes_packages"])
	}
	if !strings.Contains(all["040_containerd"], `sandbox_image = "registry.example.com:5000/dhctl/pause:3.10"`) ||
		!strings.Contains(all["040_containerd"], `SystemdCgroup = true`) {
		t.Errorf("containerd config:\n%s", all["040_containerd"])
	}
	w, err := Render(candi.FS, sampleData(RHEL, inventory.Worker, false))
	if err != nil {
		t.Fatal(err)
	}
	last := string(w.Steps[len(w.Steps)-1].Script)
	if !strings.Contains(last, "kubeadm join --config") || strings.Contains(last, "kubeadm init") || !strings.Contains(last, "rpm -U") {
		t.Errorf("rhel worker kubeadm step:\n%s", last)
	}
	for _, f := range b.Files() {
		if strings.HasPrefix(f.Path, "steps/") && f.Mode != 0o600 {
			t.Errorf("%s mode %o: steps hold secrets", f.Path, f.Mode)
		}
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	a, _ := Render(candi.FS, sampleData(Debian, inventory.Worker, false))
	b, _ := Render(candi.FS, sampleData(Debian, inventory.Worker, false))
	var x, y bytes.Buffer
	a.WriteTo(&x)
	b.WriteTo(&y)
	if x.String() != y.String() {
		t.Error("two renders of the same data differ: every re-run would redo every step")
	}
}

func TestRenderBadData(t *testing.T) {
	for name, mut := range map[string]func(*Data){
		"family": func(d *Data) { d.OSFamily = "arch" },
		"role":   func(d *Data) { d.Role = "boss" },
		"ip":     func(d *Data) { d.NodeIP = "node-1" },
		"init":   func(d *Data) { d.Role = inventory.Worker; d.Init = true },
	} {
		d := sampleData(Debian, inventory.Master, true)
		mut(&d)
		if _, err := Render(candi.FS, d); err == nil {
			t.Errorf("%s: rendered bad data", name)
		}
	}
}

func TestRedacted(t *testing.T) {
	d := sampleData(Debian, inventory.Master, true)
	d.KubeadmConfig = "token: abcdef.0123456789abcdef\n"
	r := d.Redacted("abcdef.0123456789abcdef")
	b, err := Render(candi.FS, r)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	b.WriteTo(&out)
	for _, secret := range []string{"abcdef.0123456789abcdef", `p"a'ss$word`, "user:secret"} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("redacted bundle shows %q", secret)
		}
	}
	if d.Registry.Password != `p"a'ss$word` {
		t.Error("Redacted changed the original")
	}
}

// TestShellcheck runs shellcheck on every rendered script of every bundle × role.
func TestShellcheck(t *testing.T) {
	shellcheck := ensureShellcheck(t)
	dir := t.TempDir()
	var files []string
	for _, c := range combos() {
		b, err := Render(candi.FS, sampleData(c.family, c.role, c.init))
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		for _, f := range b.Files() {
			p := filepath.Join(dir, c.String(), f.Path)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, f.Data, 0o600); err != nil {
				t.Fatal(err)
			}
			files = append(files, p)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, shellcheck, append([]string{"-s", "bash", "-S", "style", "-x"}, files...)...).CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck on %d rendered scripts: %v\n%s", len(files), err, out)
	}
	t.Logf("shellcheck: %d scripts of %d bundle × role combinations clean", len(files), len(combos()))
}

// ensureShellcheck finds shellcheck, installing the Debian package when it is missing.
func ensureShellcheck(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("shellcheck"); err == nil {
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "shellcheck")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("shellcheck is missing and `apt-get install -y shellcheck` failed (run scripts/ensure-deps.sh): %v\n%s", err, out)
	}
	p, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Fatal("shellcheck still missing after apt-get install")
	}
	return p
}

// BenchmarkRender is one node's bundle from its data (templates parsed every time, as dhctl
// does per node).
func BenchmarkRender(b *testing.B) {
	d := sampleData(Debian, inventory.Master, true)
	for i := 0; i < b.N; i++ {
		if _, err := Render(candi.FS, d); err != nil {
			b.Fatal(err)
		}
	}
}

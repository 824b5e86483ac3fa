package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const nodeOverride = `# test override: locally built Kubernetes binaries replace the built-in upstream ones
kubernetes:
  "1.33":
    packages:
      kubelet: {version: v1.33.13, files: [{name: kubelet, sha256: 1111111111111111111111111111111111111111111111111111111111111111}]}
      kubeadm: {version: v1.33.13, files: [{name: kubeadm, sha256: 2222222222222222222222222222222222222222222222222222222222222222}]}
      kubectl: {version: v1.33.13, files: [{name: kubectl, sha256: 3333333333333333333333333333333333333333333333333333333333333333}]}
`

var tokenRe = regexp.MustCompile(`[a-z0-9]{6}\.[a-z0-9]{16}`)

func TestRenderKubeadmConfig(t *testing.T) {
	code, out, errOut := runCLI(t, nil, "config", "render", "kubeadm-config", "--config", "../../examples/static-cluster.yml", "--node-ip", "192.168.199.10")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errOut)
	}
	for _, want := range []string{"kind: InitConfiguration", "kind: ClusterConfiguration", "kind: KubeletConfiguration", "kind: KubeProxyConfiguration",
		"imageRepository: registry.example.com/deckhouse/ce", "controlPlaneEndpoint: 192.168.199.10:6443", "token: <redacted>",
		// podSubnetNodeCIDRPrefix "24" of the example reaches kube-controller-manager.
		"controllerManager:\n  extraArgs:\n  - name: node-cidr-mask-size\n    value: \"24\""} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if tokenRe.MatchString(out) {
		t.Errorf("a bootstrap token is printed:\n%s", out)
	}
	if code, _, errOut := runCLI(t, nil, "config", "render", "kubeadm-config", "--config", "../../examples/static-cluster.yml"); code != 2 || !strings.Contains(errOut, "--node-ip is required") {
		t.Errorf("without --node-ip: %d %s", code, errOut)
	}
}

func TestRenderBashibleBundle(t *testing.T) {
	args := []string{"config", "render", "bashible-bundle", "--config", "../../examples/static-cluster.yml", "--node-ip", "192.168.199.11", "--control-plane-host", "192.168.199.10", "--role", "worker"}
	// Without an override the built-in map's upstream kubelet (and its published sha256) is used.
	if code, out, errOut := runCLI(t, nil, args...); code != 0 || !strings.Contains(out, "install_package 'kubelet' 'v1.33.13' '/usr/local/bin' 'kubelet' '0415ef77") {
		t.Errorf("without override: %d %s", code, errOut)
	}
	// A kubelet without a sha256 is refused, not installed unverified.
	unverified := filepath.Join(t.TempDir(), "unverified.yml")
	if err := os.WriteFile(unverified, []byte("kubernetes:\n  \"1.33\":\n    packages:\n      kubelet: {version: v1.33.13, files: [{name: kubelet, sha256: \"\"}]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI(t, nil, append(args, "--version-map-override", unverified)...); code != 2 || !strings.Contains(errOut, "no sha256; refusing") {
		t.Errorf("unverified kubelet: %d %s", code, errOut)
	}
	override := filepath.Join(t.TempDir(), "override.yml")
	if err := os.WriteFile(override, []byte(nodeOverride), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, nil, append(args, "--version-map-override", override, "--os-family", "rhel")...)
	if code != 0 {
		t.Fatalf("code %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "OVERRIDE of the version map") {
		t.Errorf("the override is not announced: %s", errOut)
	}
	for _, want := range []string{"### /var/lib/dhctl/bashible/bundle/bashible.sh (mode 700)", "steps/060_kubeadm.sh (mode 600)", "kubeadm join --config",
		"install_package 'kubelet' 'v1.33.13' '/usr/local/bin' 'kubelet' '1111", "dnf install -y", "HTTP_PROXY=http://proxy.example.com:3128", `password = "<redacted>"`} {
		if !strings.Contains(out, want) {
			t.Errorf("bundle lacks %q", want)
		}
	}
	if tokenRe.MatchString(out) || strings.Contains(out, "cGFzc3dvcmQ") || strings.Contains(out, `password = "password"`) {
		t.Errorf("the bundle shows a secret")
	}
	if code, _, errOut := runCLI(t, nil, append(args, "--version-map-override", override, "--os-family", "arch")...); code != 2 || !strings.Contains(errOut, "--os-family") {
		t.Errorf("bad family: %d %s", code, errOut)
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/artifacts"
	"github.com/dhctl-dev/dhctl/e2e/internal/testctx"
)

func TestDelegateConf(t *testing.T) {
	conf := netConf{CNIVersion: "1.0.0", Name: "cbr0", Delegate: map[string]any{"hairpinMode": false, "ipam": map[string]any{"dataDir": "/x"}}}
	raw, err := delegateConf(conf, subnetEnv{Network: "10.244.0.0/16", Subnet: "10.244.3.1/24", MTU: 1450, IPMasq: true})
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	json.Unmarshal(raw, &d)
	ipam := d["ipam"].(map[string]any)
	checks := map[string]bool{
		"type bridge":          d["type"] == "bridge",
		"name kept":            d["name"] == "cbr0",
		"mtu from flanneld":    d["mtu"] == float64(1450),
		"no masq when flannel": d["ipMasq"] == false,
		"override kept":        d["hairpinMode"] == false,
		"host-local":           ipam["type"] == "host-local",
		"dataDir kept":         ipam["dataDir"] == "/x",
		"subnet":               strings.Contains(string(raw), `"subnet":"10.244.3.0/24"`),
		"route to network":     strings.Contains(string(raw), `"dst":"10.244.0.0/16"`),
	}
	for what, ok := range checks {
		if !ok {
			t.Errorf("%s: %s", what, raw)
		}
	}
	if _, err := delegateConf(netConf{Delegate: map[string]any{"type": "macvlan"}}, subnetEnv{Network: "10.244.0.0/16", Subnet: "10.244.3.1/24"}); err == nil {
		t.Error("a macvlan delegate was accepted")
	}
}

func TestReadSubnetEnvErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := readSubnetEnv(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "flanneld") {
		t.Errorf("missing file: %v", err)
	}
	p := filepath.Join(dir, "subnet.env")
	os.WriteFile(p, []byte("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_MTU=big\n"), 0o644)
	if _, err := readSubnetEnv(p); err == nil || !strings.Contains(err.Error(), "FLANNEL_MTU") {
		t.Errorf("bad MTU: %v", err)
	}
	os.WriteFile(p, []byte("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.300/24\n"), 0o644)
	if _, err := readSubnetEnv(p); err == nil || !strings.Contains(err.Error(), "FLANNEL_SUBNET") {
		t.Errorf("bad subnet: %v", err)
	}
	os.WriteFile(p, []byte("FLANNEL_NETWORK=10.244.0.0/16\n"), 0o644)
	if _, err := readSubnetEnv(p); err == nil || !strings.Contains(err.Error(), "FLANNEL_SUBNET") {
		t.Errorf("no subnet: %v", err)
	}
}

// TestAddDelWithRealBridge runs the built plugin against the real bridge and
// host-local plugins, in network namespaces of its own (one standing for the
// node, one for the pod), so the host is never touched.
func TestAddDelWithRealBridge(t *testing.T) {
	ctx, cancel := testctx.New(t, 20*time.Minute)
	defer cancel()
	bins, err := artifacts.Build(ctx, artifacts.Options{Logf: t.Logf}, artifacts.CNIPlugins)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	plugin := filepath.Join(dir, "bin", "flannel")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", plugin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, p := range []string{"bridge", "host-local"} {
		data, err := os.ReadFile(bins[p])
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "bin", p), data, 0o755)
	}
	id := fmt.Sprintf("%d", os.Getpid())
	node, pod := "dhctl-cnitest-node-"+id, "dhctl-cnitest-pod-"+id
	for _, ns := range []string{node, pod} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v\n%s", ns, err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "delete", ns).Run() })
	}
	subnetFile := filepath.Join(dir, "subnet.env")
	os.WriteFile(subnetFile, []byte("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"), 0o644)
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"cbr0","type":"flannel","subnetFile":%q,"dataDir":%q,"delegate":{"ipam":{"dataDir":%q}}}`,
		subnetFile, filepath.Join(dir, "flannel"), filepath.Join(dir, "ipam"))
	invoke := func(command string) (string, error) {
		cmd := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+node, plugin)
		cmd.Env = append(os.Environ(), "CNI_COMMAND="+command, "CNI_CONTAINERID=test-"+id,
			"CNI_NETNS=/run/netns/"+pod, "CNI_IFNAME=eth0", "CNI_PATH="+filepath.Join(dir, "bin"))
		cmd.Stdin = strings.NewReader(conf)
		out, err := cmd.Output()
		return string(out), err
	}
	out, err := invoke("ADD")
	if err != nil {
		t.Fatalf("ADD: %v\n%s", err, out)
	}
	if !strings.Contains(out, "10.244.7.") {
		t.Errorf("ADD result has no address in 10.244.7.0/24:\n%s", out)
	}
	addr, _ := exec.Command("ip", "-n", pod, "-4", "addr", "show", "eth0").CombinedOutput()
	if !strings.Contains(string(addr), "inet 10.244.7.") || !strings.Contains(string(addr), "mtu 1450") {
		t.Errorf("pod eth0 after ADD:\n%s", addr)
	}
	routes, _ := exec.Command("ip", "-n", pod, "route").CombinedOutput()
	if !strings.Contains(string(routes), "10.244.0.0/16 via 10.244.7.1") {
		t.Errorf("pod routes lack the cluster network via the bridge:\n%s", routes)
	}
	if out, err := invoke("DEL"); err != nil {
		t.Fatalf("DEL: %v\n%s", err, out)
	}
	if out, err := exec.Command("ip", "-n", pod, "link", "show", "eth0").CombinedOutput(); err == nil {
		t.Errorf("eth0 still in the pod after DEL:\n%s", out)
	}
	if out, err := invoke("DEL"); err != nil {
		t.Errorf("second DEL (must be idempotent): %v\n%s", err, out)
	}
	if out, err := invoke("VERSION"); err != nil || !strings.Contains(out, "1.0.0") {
		t.Errorf("VERSION: %q %v", out, err)
	}
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A configuration pointing at a Deckhouse registry: the platform is <imagesRepo>:<version tag>,
// the node images come from nodeImagesRepo, the release channel is held back, and the
// registry's credentials are not printed.
const deckhouseRegistryConfig = `apiVersion: deckhouse.io/v1
kind: ClusterConfiguration
clusterType: Static
podSubnetCIDR: 10.111.0.0/16
serviceSubnetCIDR: 10.222.0.0/16
kubernetesVersion: Automatic
clusterDomain: cluster.local
---
apiVersion: deckhouse.io/v1
kind: InitConfiguration
deckhouse:
  imagesRepo: registry.example.com/deckhouse/ee
  nodeImagesRepo: registry.example.com/dhctl
  devBranch: v1.70.3
  registryDockerCfg: eyJhdXRocyI6eyJyZWdpc3RyeS5leGFtcGxlLmNvbSI6eyJhdXRoIjoiZFhObGNqcHdZWE56In19fQ==
---
apiVersion: deckhouse.io/v1alpha1
kind: ModuleConfig
metadata:
  name: deckhouse
spec:
  version: 1
  settings:
    bundle: Minimal
    releaseChannel: EarlyAccess
`

func TestRenderPlatformForADeckhouseRegistry(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(cfg, []byte(deckhouseRegistryConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, nil, "config", "render", "platform", "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"# platform image: registry.example.com/deckhouse/ee:v1.70.3 (Deckhouse's layout",
		"# node images and packages: registry.example.com/dhctl (dhctl's layout",
		"#   registry.example.com/dhctl/kube-apiserver:v1.33.13",
		"#   registry.example.com/dhctl/pause:3.10",
		"# releaseChannel EarlyAccess: set by install/release-channel once the platform is ready",
		"image: registry.example.com/deckhouse/ee:v1.70.3",
		"name: DECKHOUSE_BUNDLE\n          value: Minimal",
		".dockerconfigjson: <redacted>",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, leak := range []string{"dXNlcjpwYXNz", "eyJhdXRocyI6", "platform-controller:", "releaseChannel: EarlyAccess"} {
		if strings.Contains(out, leak) {
			t.Errorf("output holds %q", leak)
		}
	}
	// A channel as the platform's tag is refused with the field and the fix.
	code, _, errOut = runCLI(t, nil, "config", "render", "platform", "--config", cfg, "--platform-image", ":stable")
	if code != 2 || !strings.Contains(errOut, `"stable" is a release channel`) || !strings.Contains(errOut, "give the version tag") {
		t.Errorf("--platform-image :stable: exit %d, %s", code, errOut)
	}
}

package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// The README's configuration example is the examples/ files verbatim, and they validate; the
// broken variants fail with precise messages. Operators copy from the README first.
func TestREADMEExamplesValidate(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	examples := []string{"../../examples/static-cluster.yml", "../../examples/connection.yml"}
	if len(blocks) != len(examples) {
		t.Fatalf("README has %d yaml blocks, want %d (one per example)", len(blocks), len(examples))
	}
	for i, path := range examples {
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if blocks[i][1] != string(want) {
			t.Errorf("README yaml block %d differs from %s: keep them identical", i+1, path)
		}
	}

	env := map[string]string{"SSH_PRIVATE_KEY": newPrivateKeyPEM(t)}
	code, out, errOut := runCLI(t, env, "config", "validate", "--config", examples[0], "--connection-config", examples[1])
	if code != 0 || out != "valid\n" {
		t.Fatalf("examples: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, env, "config", "render", "defaults", "--config", examples[0])
	if code != 0 || !strings.Contains(out, "kind: ClusterConfiguration") || !strings.Contains(out, "encryptionAlgorithm: RSA-2048") {
		t.Fatalf("render defaults: code %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
}

func TestBrokenExamplesFailPrecisely(t *testing.T) {
	for file, want := range map[string][]string{
		"overlapping-cidrs.yml": {
			`overlapping-cidrs.yml: document 1 (ClusterConfiguration), line 6: podSubnetCIDR: "10.111.0.0/16" overlaps serviceSubnetCIDR "10.111.0.0/24"; choose non-overlapping ranges`,
		},
		"cloud-without-provider.yml": {
			"cloud-without-provider.yml: document 1 (ClusterConfiguration), line 7: cloud.provider: clusterType Cloud with provider OpenStack needs a document of kind OpenStackClusterConfiguration, and there is none",
		},
		"bad-registry.yml": {
			`line 9: clusterDomian: unknown field; did you mean "clusterDomain"?`,
			"document 2 (InitConfiguration), line 15: deckhouse.registryDockerCfg: is not valid base64",
			"document 2 (InitConfiguration), line 16: deckhouse.registryCA: is not a PEM certificate",
		},
	} {
		code, out, errOut := runCLI(t, nil, "config", "validate", "--config", filepath.Join("../../examples/broken", file))
		if code != 2 || out != "" {
			t.Errorf("%s: code %d, stdout %q; want 2 and nothing on stdout", file, code, out)
		}
		for _, w := range want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: stderr lacks %q:\n%s", file, w, errOut)
			}
		}
	}
}

func TestValidateWithoutConfigIsAUsageError(t *testing.T) {
	code, _, errOut := runCLI(t, nil, "config", "validate")
	if code != 2 || !strings.Contains(errOut, "pass --config <file>") {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
}

// newPrivateKeyPEM returns a fresh ed25519 private key in OpenSSH format, as users paste it.
func newPrivateKeyPEM(t *testing.T) string {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}

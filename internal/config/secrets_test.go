package config

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/dhctl-dev/dhctl/candi"
)

// TestSecretsNeverEchoed breaks every secret field in ways that produce messages, and checks that
// no message carries the secret.
func TestSecretsNeverEchoed(t *testing.T) {
	const secret = "hunter2"
	cfg := writeFile(t, "config.yml", validCC+`proxy:
  httpProxy: "http://bob:hunter2@proxy example:3128"
  httpsProxy: hunter2
---
`+validInit+`  registryDockerCfg: "hunter2:hunter2"
`)
	conn := writeFile(t, "conn.yml", `apiVersion: dhctl.deckhouse.io/v1alpha1
kind: SSHConfig
sshUser: ubuntu
sshAgentPrivateKeys:
- key: "-----BEGIN OPENSSH PRIVATE KEY-----\nhunter2\n-----END OPENSSH PRIVATE KEY-----\n"
  passphrase: hunter2
- key: {{ env "ENCRYPTED" | quote }}
  passphrase: hunter2
sudoPassword: [hunter2]
`)
	env := envMap(map[string]string{"ENCRYPTED": newSSHKey(t, "other")})
	// Schema errors come first (and hold back the rules of their document)...
	_, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{cfg}, ConnectionConfigPaths: []string{conn}, LookupEnv: env})
	// ...then, with sudoPassword fixed, the key rules run.
	conn2 := writeFile(t, "conn2.yml", strings.Replace(readFile(t, conn), "sudoPassword: [hunter2]", "sudoPassword: hunter2", 1))
	_, ps2 := loadProblems(t, LoadOptions{ConnectionConfigPaths: []string{conn2}, LookupEnv: env})
	ps = append(ps, ps2...)
	want := []string{"proxy.httpProxy: value is not valid", "proxy.httpsProxy: value is not valid", "deckhouse.registryDockerCfg: is not valid base64",
		"sudoPassword: must be a string, not a list", "sshAgentPrivateKeys[0].key: is not a private key", "sshAgentPrivateKeys[1].passphrase: does not decrypt the key"}
	if len(ps) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(want), ps)
	}
	for i, p := range ps {
		if !strings.Contains(p.Error(), want[i]) {
			t.Errorf("problem %d = %s, want %q", i, p.Error(), want[i])
		}
		if strings.Contains(p.Error(), secret) {
			t.Errorf("secret in message: %s", p.Error())
		}
	}
	// And render defaults redacts what it prints.
	ok := writeFile(t, "ok.yml", validCC+"proxy:\n  httpProxy: http://bob:hunter2@proxy:3128\n")
	c, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{ok}})
	if ps != nil {
		t.Fatal(ps)
	}
	out, err := c.RenderDefaults()
	if err != nil || strings.Contains(string(out), secret) || !strings.Contains(string(out), "httpProxy: <redacted>") {
		t.Errorf("render defaults: %v\n%s", err, out)
	}
	if c.ClusterConfiguration.Proxy.HTTPProxy != "http://bob:hunter2@proxy:3128" {
		t.Error("the typed model must keep the real value")
	}
}

// TestConcurrentLoadsShareRegistry: one registry serves many loads; defaults are copied, never
// shared or written back into the schemas (run with -race to see it).
func TestConcurrentLoadsShareRegistry(t *testing.T) {
	reg, err := NewRegistry(candi.FS)
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, "config.yml", validCC+"---\n"+validInit+"---\n"+validNG)
	var wg sync.WaitGroup
	clusters := make([]*Cluster, 8)
	errs := make([]error, 8)
	for i := range clusters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clusters[i], errs[i] = Load(context.Background(), LoadOptions{ConfigPaths: []string{cfg}, Schemas: reg})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
		// Mutating one result must not leak into another.
		clusters[i].Documents[0].Object["clusterDomain"] = "changed"
	}
	if got := clusters[1].ClusterConfiguration.ClusterDomain; got != "cluster.local" {
		t.Errorf("clusterDomain = %q", got)
	}
	c, err := Load(context.Background(), LoadOptions{ConfigPaths: []string{cfg}, Schemas: reg})
	if err != nil || c.Documents[0].Object["clusterDomain"] != "cluster.local" {
		t.Errorf("defaults changed by an earlier caller: %v %v", err, c.Documents[0].Object["clusterDomain"])
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

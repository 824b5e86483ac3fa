// Package infrabench measures dhctl's infrastructure runner against the engine alone on the same
// root module, the layout's master-node step, against govmomi's simulator (see
// docs/benchmarks.md, section "Infrastructure"). Run:
//
//	go test -run '^$' -bench . -benchtime 5x ./bench/infra
package infrabench

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/artifacts"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/infra"
	"github.com/dhctl-dev/dhctl/providers"
	"github.com/dhctl-dev/dhctl/providers/vsphere"
	"github.com/dhctl-dev/dhctl/providers/vsphere/vspheretest"
)

const uuid = "5c0ffee0-1111-4222-8333-944445555666"

func cfg(server string) string {
	return `apiVersion: deckhouse.io/v1
kind: ClusterConfiguration
clusterType: Cloud
cloud: {provider: vSphere, prefix: bench}
podSubnetCIDR: 10.111.0.0/16
serviceSubnetCIDR: 10.222.0.0/16
kubernetesVersion: "1.33"
---
apiVersion: deckhouse.io/v1
kind: VsphereClusterConfiguration
layout: Standard
provider: {server: "` + server + `", username: user, password: pass, insecure: true}
vmFolderPath: bench
vmFolderExists: true
useNestedResourcePool: false
region: ` + vspheretest.RegionTag + `
zones: [` + vspheretest.Cluster + `]
sshPublicKey: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKiAa0AXxPbDWhAAVCEEZLu7fFgvdMH3P+hoR+kD9TdJ t@t
masterNodeGroup:
  replicas: 1
  instanceClass:
    numCPUs: 1
    memory: 1024
    template: ` + vspheretest.Template + `
    mainNetwork: "` + vspheretest.Network + `"
    datastore: ` + vspheretest.Datastore + `
    mainNetworkIPAddresses: [{address: 10.0.0.10/24, gateway: 10.0.0.1, nameservers: {}}]
`
}

type memStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memStore) TerraformState(step string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[step], nil
}
func (s *memStore) SaveTerraformState(step string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[step] = data
	return nil
}
func (s *memStore) RemoveTerraformState(step string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, step)
	return nil
}

// providerStarts counts the distinct provider processes seen while fn runs (polling /proc).
func providerStarts(fn func()) int {
	seen := map[string]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			entries, _ := os.ReadDir("/proc")
			for _, e := range entries {
				if cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && strings.Contains(string(cmd), "terraform-provider-vsphere") {
					seen[e.Name()] = true
				}
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	fn()
	done <- struct{}{}
	<-done
	return len(seen)
}

// BenchmarkMasterNodeStep: one iteration makes the master VM and destroys it again, through
// dhctl's runner (plan to a file, show -json, analysis, apply, outputs, destroy) and through the
// engine's CLI alone (init, plan -out, apply, output -json, destroy) in fresh directories.
func BenchmarkMasterNodeStep(b *testing.B) {
	ctx := context.Background()
	env := vspheretest.Start(b, ctx)
	bins, err := artifacts.Build(ctx, artifacts.Options{}, artifacts.OpenTofu, artifacts.Terraform)
	if err != nil {
		b.Fatal(err)
	}
	mirror, err := artifacts.ProviderMirror(ctx, artifacts.Options{})
	if err != nil {
		b.Fatal(err)
	}
	// The VMs' folder, which the base-infrastructure step would make.
	dc, err := env.Finder.Datacenter(ctx, vspheretest.Datacenter)
	if err != nil {
		b.Fatal(err)
	}
	folders, err := dc.Folders(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := folders.VmFolder.CreateFolder(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	p := filepath.Join(b.TempDir(), "c.yml")
	if err := os.WriteFile(p, []byte(cfg(env.Host)), 0o600); err != nil {
		b.Fatal(err)
	}
	c, err := config.Load(ctx, config.LoadOptions{ConfigPaths: []string{p}})
	if err != nil {
		b.Fatal(err)
	}
	prov, _ := vsphere.New(c)
	d, err := prov.Discover(ctx)
	if err != nil {
		b.Fatal(err)
	}
	specs, _ := prov.Nodes(c)
	step, err := providers.Steps{Provider: prov, Cluster: c, UUID: uuid, Discovery: d}.Node(specs[0])
	if err != nil {
		b.Fatal(err)
	}
	for _, engine := range []string{"tofu", "terraform"} {
		eng, err := infra.Find(ctx, infra.FindOptions{Binary: bins[engine]})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(engine+"/dhctl", func(b *testing.B) {
			starts := 0
			for b.Loop() {
				r, err := infra.NewRunner(infra.Options{Engine: eng, PluginDir: mirror, Sources: prov.Sources(), WorkRoot: b.TempDir(), States: &memStore{m: map[string][]byte{}}})
				if err != nil {
					b.Fatal(err)
				}
				starts += providerStarts(func() {
					plan, err := r.Plan(ctx, step, prov.DestructiveTypes())
					if err != nil {
						b.Fatal(err)
					}
					if _, err := r.Apply(ctx, plan); err != nil {
						b.Fatal(err)
					}
					if err := r.Destroy(ctx, step); err != nil {
						b.Fatal(err)
					}
				})
			}
			b.ReportMetric(float64(starts)/float64(b.N), "provider-starts/op")
		})
		b.Run(engine+"/cli", func(b *testing.B) {
			starts := 0
			for b.Loop() {
				dir := b.TempDir()
				writeModule(b, step, dir, mirror)
				run := func(args ...string) {
					cmd := exec.CommandContext(ctx, bins[engine], args...)
					cmd.Dir = dir
					cmd.Env = []string{"TF_CLI_CONFIG_FILE=" + filepath.Join(dir, "cli.tfrc"), "CHECKPOINT_DISABLE=1", "HOME=" + dir, "PATH=" + os.Getenv("PATH"), "TF_IN_AUTOMATION=1"}
					if out, err := cmd.CombinedOutput(); err != nil {
						b.Fatalf("%s %v: %v\n%s", engine, args, err, out)
					}
				}
				starts += providerStarts(func() {
					run("init", "-input=false")
					run("plan", "-input=false", "-out=p")
					run("apply", "-input=false", "p")
					run("output", "-json")
					run("destroy", "-input=false", "-auto-approve")
				})
			}
			b.ReportMetric(float64(starts)/float64(b.N), "provider-starts/op")
		})
	}
}

// writeModule lays out the step's module, variables and a mirror-only CLI config in dir.
func writeModule(b *testing.B, s infra.Step, dir, mirror string) {
	entries, err := readFS(s)
	if err != nil {
		b.Fatal(err)
	}
	for name, data := range entries {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	vars, _ := json.Marshal(s.Vars)
	cli := `provider_installation {
  filesystem_mirror {
    path = "` + mirror + `"
    include = ["registry.opentofu.org/hashicorp/vsphere", "registry.terraform.io/hashicorp/vsphere"]
  }
  direct { exclude = ["*/*/*"] }
}
`
	for name, data := range map[string][]byte{"bench.auto.tfvars.json": vars, "cli.tfrc": []byte(cli)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
}

func readFS(s infra.Step) (map[string][]byte, error) {
	out := map[string][]byte{}
	entries, err := fs.ReadDir(s.Module, ".")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		data, err := fs.ReadFile(s.Module, e.Name())
		if err != nil {
			return nil, err
		}
		out[e.Name()] = data
	}
	return out, nil
}

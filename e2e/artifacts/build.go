// Package artifacts builds, pinned and cached outside the checkout, every
// binary and Debian package a kubeadm cluster of the e2e rig needs, the
// infrastructure engines (OpenTofu, Terraform) and the vSphere provider they
// drive, and publishes the cluster's ones as OCI images and package artifacts
// under the registry layout of docs/registry-layout.md.
//
// Go programs come from tool modules under e2e/tools (each its own go.mod, so
// the product never depends on them), from a writable copy of a released
// module's own directory (the engines and the provider, built with the
// dependencies their release pins), or from this repository (pause, the
// platform controller); Debian packages come from apt. Outputs live in
// ${XDG_CACHE_HOME:-$HOME/.cache}/dhctl-dev/<name>-<version>/, keyed by the
// tool module's go.mod and go.sum (or the released module's path and
// version), the build flags and the Go version, so a warm run only checks keys.
package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/internal/cache"
)

// Pinned versions. Changing one changes the cache key of what it builds.
const (
	KubernetesVersion         = "v1.33.13"
	EtcdVersion               = "v3.5.24"
	EtcdImageTag              = "3.5.24-0"
	CoreDNSVersion            = "v1.12.0"
	CNIPluginsVersion         = "v1.7.1"
	CRIToolsVersion           = "v1.34.0"
	FlannelVersion            = "v0.26.7"
	PauseImageTag             = "3.10"
	PlatformControllerVersion = "v0.2.1"
	// CNIFlannelVersion is this repository's stand-in for flannel's CNI
	// plugin (e2e/cni-flannel), whose module the proxy does not serve.
	CNIFlannelVersion = "v0.1.0"
	// OpenTofuVersion is the engine Deckhouse runs its cloud layouts with.
	OpenTofuVersion = "v1.10.6"
	// TerraformVersion is the last release under the MPL.
	TerraformVersion = "v1.5.7"
	// VSphereProviderVersion is hashicorp/vsphere's newest release the Go
	// module proxy serves (it refuses every v2.x).
	VSphereProviderVersion = "v1.26.0"
)

// A component is one group of binaries built together.
type component struct {
	name    string
	version string
	// toolModule is the directory under e2e/tools holding its go.mod; empty
	// for programs of this repository.
	toolModule string
	// binaries maps output file name to Go package.
	binaries map[string]string
	cgo      bool
	tags     string
	ldflags  string
	// module ("path@version"), if set, is built as the main module from a
	// writable copy of its own directory (see copyModule), and binaries name
	// packages relative to its root. A release's go.mod may carry replace
	// directives (OpenTofu's does), which only apply to the main module, so
	// neither go install nor a tool module would build what was released.
	module string
	// engine marks OpenTofu and Terraform: `<binary> version -json` must
	// report version after a build.
	engine bool
	// provider, if set, also lays the single binary out as that Terraform
	// provider in the filesystem mirror under <dir>/mirror.
	provider *providerSpec
}

// Component names accepted by Build.
const (
	Kubernetes         = "kubernetes"
	Etcd               = "etcd"
	CoreDNS            = "coredns"
	CNIPlugins         = "cni-plugins"
	CRITools           = "cri-tools"
	Flannel            = "flannel"
	Pause              = "pause"
	PlatformController = "platform-controller"
	CNIFlannel         = "cni-flannel"
	OpenTofu           = "opentofu"
	Terraform          = "terraform"
	VSphereProvider    = "terraform-provider-vsphere"
)

func kubeVersionFlags() string {
	v := strings.TrimPrefix(KubernetesVersion, "v")
	parts := strings.SplitN(v, ".", 3)
	var b strings.Builder
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		fmt.Fprintf(&b, " -X %s.gitVersion=%s -X %s.gitMajor=%s -X %s.gitMinor=%s -X %s.gitTreeState=clean -X %s.buildDate=1970-01-01T00:00:00Z",
			pkg, KubernetesVersion, pkg, parts[0], pkg, parts[1], pkg, pkg)
	}
	return "-s -w" + b.String()
}

func components() []component {
	kube := map[string]string{}
	for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet", "kubeadm", "kubectl"} {
		kube[c] = "k8s.io/kubernetes/cmd/" + c
	}
	cni := map[string]string{}
	for _, p := range []string{"main/bridge", "ipam/host-local", "main/loopback", "meta/portmap"} {
		cni[filepath.Base(p)] = "github.com/containernetworking/plugins/plugins/" + p
	}
	return []component{
		{name: Kubernetes, version: KubernetesVersion, toolModule: "kubernetes", binaries: kube, ldflags: kubeVersionFlags()},
		{name: Etcd, version: EtcdVersion, toolModule: "etcd", binaries: map[string]string{"etcd": "go.etcd.io/etcd/server/v3"}, ldflags: "-s -w"},
		{name: CoreDNS, version: CoreDNSVersion, toolModule: "coredns", binaries: map[string]string{"coredns": "github.com/coredns/coredns"}, ldflags: "-s -w"},
		{name: CNIPlugins, version: CNIPluginsVersion, toolModule: "cni-plugins", binaries: cni,
			ldflags: "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=" + CNIPluginsVersion},
		// flanneld needs cgo on amd64; link it statically so it runs on an
		// image without libc.
		{name: Flannel, version: FlannelVersion, toolModule: "flannel", binaries: map[string]string{"flanneld": "github.com/flannel-io/flannel"},
			cgo: true, tags: "netgo,osusergo", ldflags: `-s -w -extldflags "-static" -X github.com/flannel-io/flannel/pkg/version.Version=` + FlannelVersion},
		{name: CRITools, version: CRIToolsVersion, toolModule: "cri-tools", binaries: map[string]string{"crictl": "sigs.k8s.io/cri-tools/cmd/crictl"},
			ldflags: "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=" + CRIToolsVersion},
		{name: Pause, version: PauseImageTag, binaries: map[string]string{"pause": "github.com/dhctl-dev/dhctl/e2e/pause"}, ldflags: "-s -w"},
		{name: CNIFlannel, version: CNIFlannelVersion, binaries: map[string]string{"flannel": "github.com/dhctl-dev/dhctl/e2e/cni-flannel"}, ldflags: "-s -w"},
		{name: PlatformController, version: PlatformControllerVersion, binaries: map[string]string{"platform-controller": "github.com/dhctl-dev/dhctl/e2e/platform-controller"}, ldflags: "-s -w"},
		// Without version.dev=no OpenTofu reports itself as v1.10.6-dev.
		{name: OpenTofu, version: OpenTofuVersion, module: "github.com/opentofu/opentofu@" + OpenTofuVersion, engine: true,
			binaries: map[string]string{"tofu": "./cmd/tofu"}, ldflags: "-s -w -X github.com/opentofu/opentofu/version.dev=no"},
		{name: Terraform, version: TerraformVersion, module: "github.com/hashicorp/terraform@" + TerraformVersion, engine: true,
			binaries: map[string]string{"terraform": "."}, ldflags: "-s -w"},
		{name: VSphereProvider, version: VSphereProviderVersion, module: "github.com/hashicorp/terraform-provider-vsphere@" + VSphereProviderVersion,
			binaries: map[string]string{"terraform-provider-vsphere": "."}, ldflags: "-s -w",
			provider: &providerSpec{namespace: "hashicorp", typ: "vsphere"}},
	}
}

// Options configure a build.
type Options struct {
	// RepoRoot is the checkout holding e2e/tools; found from the working
	// directory upwards if empty.
	RepoRoot string
	// CacheDir defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/dhctl-dev.
	CacheDir string
	// Logf receives progress messages, if set.
	Logf func(format string, args ...any)
}

func (o *Options) defaults() error {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.CacheDir == "" {
		d, err := cache.Dir()
		if err != nil {
			return err
		}
		o.CacheDir = d
	}
	if o.RepoRoot == "" {
		root, err := findRepoRoot()
		if err != nil {
			return err
		}
		o.RepoRoot = root
	}
	return nil
}

// findRepoRoot walks up from the working directory to the checkout root.
func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "e2e", "tools", "kubernetes", "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("artifacts: no e2e/tools/kubernetes/go.mod above %s: run from the dhctl checkout or set Options.RepoRoot", dir)
		}
	}
}

// Binaries maps a binary name (kube-apiserver, etcd, pause, bridge, ...) to
// its path in the cache.
type Binaries map[string]string

// Build builds the named components (all if none is named) and returns the
// paths of their binaries. Each component is built at most once per cache key,
// even by concurrent processes.
func Build(ctx context.Context, opts Options, names ...string) (Binaries, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	known := map[string]bool{}
	var list []string
	for _, c := range components() {
		known[c.name] = true
		list = append(list, c.name)
	}
	for _, n := range names {
		if !known[n] {
			return nil, fmt.Errorf("artifacts: unknown component %q; known: %s", n, strings.Join(list, ", "))
		}
	}
	out := Binaries{}
	for _, c := range components() {
		if len(want) > 0 && !want[c.name] {
			continue
		}
		bins, err := buildComponent(ctx, opts, c)
		if err != nil {
			return nil, err
		}
		for k, v := range bins {
			out[k] = v
		}
	}
	return out, nil
}

// buildKey identifies one build of c: its sources' module files (or, for
// programs of this repository, their source files), flags and the Go version.
func buildKey(opts Options, c component) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%v\n%s\n%s\n%s\n", c.name, c.version, c.cgo, c.tags, c.ldflags, runtime.Version())
	for _, k := range sortedKeys(c.binaries) {
		fmt.Fprintf(h, "%s=%s\n", k, c.binaries[k])
	}
	if c.provider != nil {
		fmt.Fprintf(h, "provider %s/%s %v %s\n", c.provider.namespace, c.provider.typ, MirrorHosts(), platform())
	}
	var files []string
	switch {
	case c.module != "":
		// A released module's content is fixed by its version (the checksum
		// database vouches for it), so the key needs neither its files nor
		// the proxy: a warm run stays offline and instant.
		fmt.Fprintf(h, "module %s\n", c.module)
	case c.toolModule != "":
		dir := filepath.Join(opts.RepoRoot, "e2e", "tools", c.toolModule)
		files = []string{filepath.Join(dir, "go.mod"), filepath.Join(dir, "go.sum")}
	default:
		files = []string{filepath.Join(opts.RepoRoot, "go.mod"), filepath.Join(opts.RepoRoot, "go.sum")}
		for _, pkg := range c.binaries {
			rel := strings.TrimPrefix(pkg, "github.com/dhctl-dev/dhctl/")
			src, _ := filepath.Glob(filepath.Join(opts.RepoRoot, rel, "*.go"))
			files = append(files, src...)
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("artifacts: %s: %w", c.name, err)
		}
		fmt.Fprintf(h, "%s\n%d\n", filepath.Base(f), len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func buildComponent(ctx context.Context, opts Options, c component) (Binaries, error) {
	key, err := buildKey(opts, c)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(opts.CacheDir, c.name+"-"+c.version)
	bins := Binaries{}
	for name := range c.binaries {
		bins[name] = filepath.Join(dir, "bin", name)
	}
	keyFile := filepath.Join(dir, "key")
	if have, err := os.ReadFile(keyFile); err == nil && string(have) == key {
		return bins, nil
	}
	err = cache.WithLock(ctx, dir+".lock", func() error {
		if have, err := os.ReadFile(keyFile); err == nil && string(have) == key {
			return nil
		}
		start := time.Now()
		opts.Logf("artifacts: building %s %s (cold: minutes)", c.name, c.version)
		workDir := opts.RepoRoot
		if c.toolModule != "" {
			workDir = filepath.Join(opts.RepoRoot, "e2e", "tools", c.toolModule)
		}
		if c.module != "" {
			// The copy sits in the cache, under this component's lock, so
			// a killed run's leftover is removed by the next build.
			scratch := dir + ".src"
			defer os.RemoveAll(scratch)
			var err error
			if workDir, err = copyModule(ctx, c.module, scratch); err != nil {
				return fmt.Errorf("artifacts: %s: %w", c.name, err)
			}
		}
		if err := goBuild(ctx, opts, c, workDir, filepath.Join(dir, "bin")); err != nil {
			return err
		}
		if c.engine {
			for _, bin := range bins {
				if err := checkEngineVersion(ctx, bin, c.version); err != nil {
					return fmt.Errorf("artifacts: %s: %w", c.name, err)
				}
			}
		}
		if c.provider != nil {
			for _, bin := range bins {
				if err := layoutMirror(filepath.Join(dir, "mirror"), *c.provider, c.version, bin); err != nil {
					return fmt.Errorf("artifacts: %s: %w", c.name, err)
				}
			}
		}
		opts.Logf("artifacts: built %s %s in %v", c.name, c.version, time.Since(start).Round(time.Second))
		return os.WriteFile(keyFile, []byte(key), 0o644)
	})
	if err != nil {
		return nil, err
	}
	return bins, nil
}

// goBuild runs one `go build` in workDir for all binaries of c, niced so that
// a cold build leaves the machine usable.
func goBuild(ctx context.Context, opts Options, c component, workDir, outDir string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Minute)
	defer cancel()
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	if c.cgo {
		if err := ensureCCompiler(ctx); err != nil {
			return fmt.Errorf("artifacts: building %s needs a C compiler: %w", c.name, err)
		}
	}
	// Several packages: -o DIR/ names each binary after its package's last
	// element (kube-apiserver, bridge, ...). One package: name it directly,
	// because module roots such as go.etcd.io/etcd/server/v3 would be named
	// after their path instead.
	output := outDir + "/"
	if len(c.binaries) == 1 {
		for name := range c.binaries {
			output = filepath.Join(outDir, name)
		}
	}
	args := []string{"-n", "10", "go", "build", "-trimpath", "-o", output}
	if c.tags != "" {
		args = append(args, "-tags", c.tags)
	}
	args = append(args, "-ldflags", c.ldflags)
	for _, k := range sortedKeys(c.binaries) {
		args = append(args, c.binaries[k])
	}
	cmd := exec.CommandContext(ctx, "nice", args...)
	cmd.Dir = workDir
	cgo := "0"
	if c.cgo {
		cgo = "1"
	}
	cmd.Env = append(os.Environ(), "CGO_ENABLED="+cgo, "GOWORK=off", "GOFLAGS=-mod=mod -buildvcs=false")
	if c.module != "" {
		// A release's go.mod may ask for a newer Go than this one; fail
		// rather than fetch a toolchain the cache key does not name.
		cmd.Env = append(cmd.Env, "GOTOOLCHAIN=local")
	}
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("artifacts: building %s %s in %s: gave up after 60 minutes", c.name, c.version, workDir)
		}
		return fmt.Errorf("artifacts: building %s %s in %s: %w\n%s", c.name, c.version, workDir, err, lastLines(string(out), 30))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ensureCCompiler installs gcc and the static C library (Debian's gcc and
// libc6-dev) when they are missing: flanneld links with cgo, statically.
func ensureCCompiler(ctx context.Context) error {
	if _, err := exec.LookPath("gcc"); err == nil {
		if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/libc.a"); err == nil {
			return nil
		}
	}
	install := func() ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "-q", "--no-install-recommends", "gcc", "libc6-dev")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	if _, err := install(); err == nil {
		return nil
	}
	if out, err := exec.CommandContext(ctx, "apt-get", "update", "-q").CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get update: %w\n%s", err, lastLines(string(out), 10))
	}
	if out, err := install(); err != nil {
		return fmt.Errorf("apt-get install gcc libc6-dev: %w\n%s", err, lastLines(string(out), 10))
	}
	return nil
}

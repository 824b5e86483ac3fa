package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/mirror"
)

// The air-gap commands: `mirror pull` makes a bundle of everything a cluster needs, `mirror push`
// puts a bundle into a private registry under the layout of docs/registry-layout.md.

func newMirrorCommand(opts *globalOptions) *cobra.Command {
	cmd := newGroupCommand("mirror", "Copy every image and package a cluster needs into a bundle or a private registry")
	cmd.AddCommand(newMirrorPullCommand(opts), newMirrorPushCommand(opts))
	return cmd
}

type mirrorPullFlags struct {
	nodeFlags
	Versions       []string
	Providers      []string
	Source         string
	SourceLogin    string
	SourcePassword string
	SourceCA       string
	DryRun         bool
	ChunkSize      string
}

func newMirrorPullCommand(opts *globalOptions) *cobra.Command {
	var f mirrorPullFlags
	cmd := &cobra.Command{
		Use:   "pull <bundle-dir>",
		Short: "Download every image and node package a cluster needs into a bundle",
		Long: `Download, for the Kubernetes version of --config (or every --kubernetes-version, or the
default one), every image the nodes run (control plane, etcd, CoreDNS, pause, kube-proxy, the
CNI, dhctl's platform controller) and every node package (kubelet, kubeadm, kubectl,
containerd, runc, CNI plugins, crictl) into <bundle-dir>: one tar per archive (platform.tar,
packages.tar), each an OCI image layout storing every blob once, and dhctl-bundle.json listing
every item with its digest. A cloud cluster's Terraform provider plugins (those of --config's
provider, or every --terraform-provider) come too, laid out in <bundle-dir>/terraform-plugins
for --terraform-plugins-dir. Upstream sha256 sums of the version map are checked as every file
enters; an interrupted pull resumes without fetching finished blobs again. A Deckhouse
platform's own images are d8 mirror's business.`,
		Example: `  dhctl mirror pull --config config.yml ./bundle
  dhctl mirror pull --kubernetes-version all --images-bundle-chunk-size 2 ./bundle
  dhctl mirror pull --source registry.example.com/dhctl --source-login u ./bundle
  dhctl mirror pull --dry-run --config config.yml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !f.DryRun {
				return usageError(errors.New("give the bundle directory: dhctl mirror pull <bundle-dir> (or --dry-run to list what it would hold)"))
			}
			return runMirrorPull(cmd, opts, &f, args)
		},
	}
	f.addVersionMap(cmd)
	fl := cmd.Flags()
	fl.StringArrayVar(&f.Versions, "kubernetes-version", nil, "Kubernetes minor to mirror, e.g. 1.33 (repeatable; \"all\" for every supported one; default: --config's, else the default)")
	fl.StringArrayVar(&f.Providers, "terraform-provider", nil, "Terraform provider plugin to carry, by source, e.g. hashicorp/vsphere (repeatable; \"all\" for every one of the version map; default: --config's cloud provider's)")
	fl.StringVar(&f.Source, "source", "", "take everything from this registry path in dhctl's layout (another mirror) instead of upstream")
	fl.StringVar(&f.SourceLogin, "source-login", "", "user for --source")
	fl.StringVar(&f.SourcePassword, "source-password", "", "password for --source (better: DHCTL_SOURCE_PASSWORD)")
	fl.StringVar(&f.SourceCA, "source-ca", "", "PEM file of the CA that signed --source's certificate")
	fl.BoolVar(&f.DryRun, "dry-run", false, "print what the bundle would hold, with sizes, and change nothing")
	fl.BoolVar(&f.DryRun, "list", false, "the same as --dry-run")
	fl.StringVar(&f.ChunkSize, "images-bundle-chunk-size", "", "split every archive into chunks of at most this size: gigabytes as a number, or with a unit (500M, 2G)")
	return cmd
}

func runMirrorPull(cmd *cobra.Command, opts *globalOptions, f *mirrorPullFlags, args []string) error {
	ctx := cmd.Context()
	vm, err := f.versionMap(ctx, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	var cluster *config.Cluster
	if len(opts.ConfigPaths) > 0 {
		if cluster, err = loadConfig(cmd, opts, true); err != nil {
			return err
		}
	}
	minors, err := mirrorMinors(cluster, vm, f.Versions)
	if err != nil {
		return err
	}
	sources, err := mirrorProviders(cluster, vm, f.Providers)
	if err != nil {
		return err
	}
	items, err := mirror.Plan(vm, minors, sources...)
	if err != nil {
		return usageError(err)
	}
	// A released dhctl carries its own installer image (a development build has none to name).
	if it, ok := mirror.InstallerItem(vm, buildVersion()); ok {
		items = append(items, it)
	}
	chunk, err := parseChunkSize(f.ChunkSize)
	if err != nil {
		return usageError(fmt.Errorf("--images-bundle-chunk-size: %w", err))
	}
	src := mirror.Registry{User: f.SourceLogin, Password: f.SourcePassword}
	if f.SourceCA != "" {
		if src.CACert, err = os.ReadFile(f.SourceCA); err != nil {
			return usageError(fmt.Errorf("--source-ca: %w", err))
		}
	}
	o := mirror.PullOptions{Items: items, SourceRepo: strings.TrimSuffix(f.Source, "/"), Source: src, ChunkSize: chunk,
		Logf: func(format string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), "mirror pull: "+format+"\n", a...) }}
	if f.DryRun {
		sized, err := mirror.Sizes(ctx, o)
		if err != nil {
			return err
		}
		return printMirrorList(cmd, minors, sized)
	}
	res, err := mirror.Pull(ctx, args[0], o)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "bundle %s: %d items for Kubernetes %s, %s; push it with: dhctl mirror push %s <registry>/<path>\n",
		args[0], len(res.Manifest.Items), strings.Join(minors, ", "), mirror.HumanBytes(res.Manifest.Size()), args[0])
	return nil
}

// mirrorMinors are the Kubernetes minors to mirror: --kubernetes-version, else the
// configuration's, else the version map's default.
func mirrorMinors(cluster *config.Cluster, vm *config.VersionMap, versions []string) ([]string, error) {
	if len(versions) == 0 {
		if cluster == nil {
			return []string{vm.Default()}, nil
		}
		versions = []string{cluster.KubernetesVersion}
	}
	seen := map[string]bool{}
	var out []string
	for _, v := range versions {
		var add []string
		switch {
		case strings.EqualFold(v, "all"):
			add = vm.Supported()
		case v == "" || v == config.KubernetesVersionAutomatic:
			add = []string{vm.Default()}
		default:
			m := v
			if parts := strings.Split(strings.TrimPrefix(v, "v"), "."); len(parts) >= 2 {
				m = parts[0] + "." + parts[1]
			}
			if rel, ok := vm.Release(m); !ok || (m != strings.TrimPrefix(v, "v") && rel.Patch != strings.TrimPrefix(v, "v")) {
				return nil, usageError(fmt.Errorf("--kubernetes-version %s: not supported by this dhctl; supported: %s, or all", v, strings.Join(vm.Supported(), ", ")))
			}
			add = []string{m}
		}
		for _, m := range add {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	return out, nil
}

// mirrorProviders are the Terraform provider sources to carry: --terraform-provider, else the
// configuration's cloud provider's.
func mirrorProviders(cluster *config.Cluster, vm *config.VersionMap, flags []string) ([]string, error) {
	if len(flags) == 0 {
		if cluster == nil {
			return nil, nil
		}
		prov, err := providerRegistry().For(cluster)
		if err != nil {
			return nil, usageError(err)
		}
		if prov == nil {
			return nil, nil
		}
		return prov.Sources(), nil
	}
	var out []string
	for _, f := range flags {
		if strings.EqualFold(f, "all") {
			for src := range vm.TerraformProviders {
				out = append(out, src)
			}
			continue
		}
		if _, ok := vm.TerraformProviders[f]; !ok {
			var known []string
			for src := range vm.TerraformProviders {
				known = append(known, src)
			}
			sort.Strings(known)
			return nil, usageError(fmt.Errorf("--terraform-provider %s: not in the version map (it has: %s, or all)", f, strings.Join(known, ", ")))
		}
		out = append(out, f)
	}
	sort.Strings(out)
	return out, nil
}

func printMirrorList(cmd *cobra.Command, minors []string, items []mirror.Item) error {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "KIND\tPATH\tSIZE\tFROM\n")
	var total int64
	for _, it := range items {
		size := "unknown"
		if it.Size >= 0 {
			size = mirror.HumanBytes(it.Size)
			total += it.Size
		}
		from := it.Upstream
		if it.Kind != mirror.KindImage && from == "" {
			var urls []string
			for _, f := range it.Files {
				urls = append(urls, f.URL)
			}
			from = strings.Join(urls, " ")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", it.Kind, it.Path, size, from)
	}
	fmt.Fprintf(w, "\n%d items for Kubernetes %s, %s before blobs shared by several items are counted once\n", len(items), strings.Join(minors, ", "), mirror.HumanBytes(total))
	return w.Flush()
}

// parseChunkSize reads a size: a bare number is gigabytes (as d8 mirror's flag), or a number
// with K, M or G (powers of 1024).
func parseChunkSize(s string) (int64, error) {
	if s == "" || s == "0" {
		return 0, nil
	}
	mult := int64(1 << 30)
	num := strings.TrimSuffix(strings.ToUpper(s), "B")
	switch {
	case strings.HasSuffix(num, "G"):
		num = strings.TrimSuffix(num, "G")
	case strings.HasSuffix(num, "M"):
		num, mult = strings.TrimSuffix(num, "M"), 1<<20
	case strings.HasSuffix(num, "K"):
		num, mult = strings.TrimSuffix(num, "K"), 1<<10
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q is not a size: give gigabytes (2) or a size with a unit (500M, 2G)", s)
	}
	n := int64(v * float64(mult))
	if n < 1<<20 {
		return 0, fmt.Errorf("%q is below 1M: chunks that small would be thousands of files", s)
	}
	return n, nil
}

type mirrorPushFlags struct {
	Login, Password, CA string
	Insecure            bool
}

func newMirrorPushCommand(_ *globalOptions) *cobra.Command {
	var f mirrorPushFlags
	cmd := &cobra.Command{
		Use:   "push <bundle-dir> <registry>/<path>",
		Short: "Upload a bundle into a private registry",
		Long: `Push every item of a bundle made by dhctl mirror pull below <registry>/<path>, the
imagesRepo (or nodeImagesRepo) of the InitConfiguration, in the layout nodes pull from
(docs/registry-layout.md). Write access is checked first; items the registry already has are
skipped, so an interrupted push resumes; a failed item is retried a few times; every blob is
verified as it is read from the bundle, and the push ends by checking that every item is in the
registry with the bundle's digest.`,
		Example: `  dhctl mirror push ./bundle registry.example.com:5000/dhctl --registry-login admin --registry-ca ca.crt
  DHCTL_REGISTRY_PASSWORD=... dhctl mirror push ./bundle registry.example.com/dhctl --registry-login admin`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMirrorPush(cmd, &f, args[0], args[1])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.Login, "registry-login", "", "user to push as")
	fl.StringVar(&f.Password, "registry-password", "", "password to push with (better: DHCTL_REGISTRY_PASSWORD)")
	fl.StringVar(&f.CA, "registry-ca", "", "PEM file of the CA that signed the registry's certificate")
	fl.BoolVar(&f.Insecure, "insecure", false, "talk plain HTTP to the registry (never implied)")
	return cmd
}

func runMirrorPush(cmd *cobra.Command, f *mirrorPushFlags, dir, repo string) error {
	if strings.Contains(repo, "://") {
		return usageError(fmt.Errorf("%s: give the registry path without a scheme, e.g. registry.example.com:5000/dhctl (--insecure for plain HTTP)", repo))
	}
	if !strings.Contains(strings.TrimSuffix(repo, "/"), "/") {
		return usageError(fmt.Errorf("%s: give a path below the registry host, e.g. %s/dhctl: the items' names would otherwise be top-level repositories", repo, strings.TrimSuffix(repo, "/")))
	}
	reg := mirror.Registry{User: f.Login, Password: f.Password, Insecure: f.Insecure}
	if f.CA != "" {
		var err error
		if reg.CACert, err = os.ReadFile(f.CA); err != nil {
			return usageError(fmt.Errorf("--registry-ca: %w", err))
		}
	}
	b, err := mirror.Open(dir)
	if err != nil {
		return err
	}
	defer b.Close()
	o := mirror.PushOptions{Repo: repo, Registry: reg,
		Logf: func(format string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), "mirror push: "+format+"\n", a...) }}
	if file, ok := cmd.ErrOrStderr().(*os.File); ok && term.IsTerminal(int(file.Fd())) {
		o.Bar = file
	}
	res, err := mirror.Push(cmd.Context(), b, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: %d item(s) pushed (%s), %d already there; every item of the bundle verified\n",
		repo, res.Pushed, mirror.HumanBytes(res.Bytes), res.Present)
	return nil
}

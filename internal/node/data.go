// Package node renders the candi bundle for one host (OS family, role, versions, registry),
// ships it as one tar stream over SSH and runs its steps idempotently, reporting per step.
package node

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path"
	"strings"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/inventory"
)

// OSFamily selects the bundle.
type OSFamily string

// Supported OS families.
const (
	Debian OSFamily = "debian" // Debian, Ubuntu
	RHEL   OSFamily = "rhel"   // RHEL, Rocky, Alma, CentOS Stream
)

// Families lists the supported OS families, in the order they are supported.
func Families() []OSFamily { return []OSFamily{Debian, RHEL} }

// Data is everything a bundle is rendered from.
type Data struct {
	NodeName          string
	NodeIP            string
	Role              inventory.Role
	Init              bool // the first control-plane node: kubeadm init
	UploadCerts       bool // kubeadm init --upload-certs (other control-plane nodes will join)
	OSFamily          OSFamily
	KubernetesVersion string // full release, e.g. "1.33.13"
	CgroupDriver      string // "systemd" or "cgroupfs"
	Packages          []Package
	Registry          *Registry
	SandboxImage      string
	Proxy             *Proxy
	ClusterDomain     string
	PodSubnet         string
	ServiceSubnet     string
	KubeadmConfig     string // init or join documents (holds the bootstrap token)
	// DiscoveryKubeconfig is what a joining node's file discovery reads (the API server and
	// the cluster CA; see kubeadm.DiscoveryKubeconfig); empty for token discovery and init.
	DiscoveryKubeconfig string
	// PrePullImages are the images the node will run, pulled in the background while it is
	// prepared (full references).
	PrePullImages []string
	// ControlPlaneEndpoint is the API servers' host:port. A node other than the first master
	// starts its image pull only once it answers: until then the registry and (on shared
	// hardware) the CPU go to the first master's pull and kubeadm init, the critical path.
	ControlPlaneEndpoint string
}

// Package is one node package as the packages step installs it.
type Package struct {
	Name    string
	Version string
	Dest    string
	Files   []PackageFile
	// Runtime marks the container runtime's packages, installed before containerd is
	// configured and the node's images start pulling; the others follow, during the pull.
	Runtime bool
}

// PackageFile is one file to fetch and its sha256.
type PackageFile struct {
	Name   string
	SHA256 string
}

// Registry is where containerd pulls images from.
type Registry struct {
	Host     string // host[:port]
	Scheme   string // "https" or "http"
	CA       string // PEM, optional
	User     string
	Password string // secret
}

// Proxy is the nodes' HTTP proxy for containerd and kubelet. URLs may hold credentials.
type Proxy struct {
	HTTP    string
	HTTPS   string
	NoProxy string
}

// packageOrder installs runc before containerd (Debian's containerd depends on it); the first
// runtimePackages of it are the container runtime's.
var packageOrder = []string{"runc", "containerd", "crictl", "cni-plugins", "kubelet", "kubeadm", "kubectl"}

const runtimePackages = 3

// RuntimePackages are the container runtime's packages (step 030), in install order.
func (d Data) RuntimePackages() []Package { return d.packages(true) }

// KubernetesPackages are the other packages (step 047), in install order.
func (d Data) KubernetesPackages() []Package { return d.packages(false) }

func (d Data) packages(runtime bool) []Package {
	var out []Package
	for _, p := range d.Packages {
		if p.Runtime == runtime {
			out = append(out, p)
		}
	}
	return out
}

// defaultDest is where a package's files go when the version map does not say.
func defaultDest(name string) string {
	if name == "cni-plugins" {
		return "/opt/cni/bin"
	}
	return "/usr/local/bin"
}

// PackagesFor picks the node packages of a release, in install order. A package the release
// lacks or a file without a sha256 is an error naming it: nothing unverified reaches a node.
func PackagesFor(rel config.KubernetesRelease, minor string) ([]Package, error) {
	var out []Package
	for i, name := range packageOrder {
		p, ok := rel.Packages[name]
		if !ok {
			return nil, fmt.Errorf("version map: Kubernetes %s has no package %q (no verified sha256 is published for it); give one with --version-map-override", minor, name)
		}
		pkg := Package{Name: name, Version: p.Version, Dest: p.Dest, Runtime: i < runtimePackages}
		if pkg.Dest == "" {
			pkg.Dest = defaultDest(name)
		}
		for _, f := range p.FileList() {
			if len(f.SHA256) != 64 {
				return nil, fmt.Errorf("version map: Kubernetes %s package %s file %s has no sha256; refusing to install it unverified", minor, name, f.Name)
			}
			pkg.Files = append(pkg.Files, PackageFile{Name: f.Name, SHA256: f.SHA256})
		}
		out = append(out, pkg)
	}
	return out, nil
}

// RegistryFrom reads the registry of InitConfiguration: host of imagesRepo, scheme, CA and the
// credentials for that host in registryDockerCfg.
func RegistryFrom(ic *config.InitConfiguration) (*Registry, error) {
	if ic == nil || ic.Deckhouse.ImagesRepo == "" {
		return nil, errors.New("InitConfiguration deckhouse.imagesRepo is not set: nodes pull every image from it")
	}
	host, _, _ := strings.Cut(ic.Deckhouse.ImagesRepo, "/")
	r := &Registry{Host: host, Scheme: "https", CA: strings.TrimSpace(ic.Deckhouse.RegistryCA)}
	if strings.EqualFold(ic.Deckhouse.RegistryScheme, "HTTP") {
		r.Scheme = "http"
	}
	if ic.Deckhouse.RegistryDockerCfg == "" {
		return r, nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(ic.Deckhouse.RegistryDockerCfg))
	if err != nil {
		return nil, errors.New("InitConfiguration deckhouse.registryDockerCfg is not base64 (it is the base64 of a docker config.json)")
	}
	var cfg struct {
		Auths map[string]struct {
			Auth     string `json:"auth"`
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, errors.New("InitConfiguration deckhouse.registryDockerCfg: the decoded text is not a docker config.json ({\"auths\": {...}})")
	}
	a, ok := cfg.Auths[host]
	if !ok {
		return r, nil
	}
	r.User, r.Password = a.Username, a.Password
	if a.Auth != "" {
		up, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return nil, fmt.Errorf("InitConfiguration deckhouse.registryDockerCfg: auths[%q].auth is not base64 of user:password", host)
		}
		r.User, r.Password, _ = strings.Cut(string(up), ":")
	}
	return r, nil
}

// ProxyFrom converts ClusterConfiguration.proxy; the pod and service ranges and the cluster
// domain never go through the proxy.
func ProxyFrom(c config.ClusterConfiguration) *Proxy {
	if c.Proxy == nil || (c.Proxy.HTTPProxy == "" && c.Proxy.HTTPSProxy == "") {
		return nil
	}
	no := append([]string{"127.0.0.1", "localhost", c.PodSubnetCIDR, c.ServiceSubnetCIDR, "." + c.ClusterDomain}, c.Proxy.NoProxy...)
	return &Proxy{HTTP: c.Proxy.HTTPProxy, HTTPS: c.Proxy.HTTPSProxy, NoProxy: strings.Join(no, ",")}
}

// SandboxImage is the pause image in the cluster's registry (images are flattened there).
func SandboxImage(imagesRepo string, rel config.KubernetesRelease) (string, error) {
	p, ok := rel.Images["pause"]
	if !ok || p.Tag == "" {
		return "", errors.New("version map: no pause image")
	}
	return strings.TrimSuffix(imagesRepo, "/") + "/" + path.Base(p.Repository) + ":" + p.Tag, nil
}

// ControlPlaneHost and ControlPlanePort are ControlPlaneEndpoint's parts (validated).
func (d Data) ControlPlaneHost() string {
	h, _, _ := net.SplitHostPort(d.ControlPlaneEndpoint)
	return h
}

func (d Data) ControlPlanePort() string {
	_, p, _ := net.SplitHostPort(d.ControlPlaneEndpoint)
	return p
}

func (d Data) validate() error {
	if !d.Init {
		// It is written into a shell word: an address or a DNS name, and a port, nothing else.
		h, p, err := net.SplitHostPort(d.ControlPlaneEndpoint)
		if err != nil || h == "" || strings.Trim(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:") != "" ||
			strings.Trim(p, "0123456789") != "" || p == "" {
			return fmt.Errorf("control-plane endpoint %q is not host:port", d.ControlPlaneEndpoint)
		}
	}
	if net.ParseIP(d.NodeIP) == nil {
		return fmt.Errorf("node address %q is not an IP address", d.NodeIP)
	}
	switch d.Role {
	case inventory.Master, inventory.Worker:
	default:
		return fmt.Errorf("role %q: want master or worker", d.Role)
	}
	if d.Init && d.Role != inventory.Master {
		return errors.New("only a master runs kubeadm init")
	}
	switch d.OSFamily {
	case Debian, RHEL:
	default:
		return fmt.Errorf("OS family %q: supported are debian (Debian, Ubuntu) and rhel (Rocky, Alma, CentOS Stream)", d.OSFamily)
	}
	switch d.CgroupDriver {
	case "systemd", "cgroupfs":
	default:
		return fmt.Errorf("cgroup driver %q: want systemd or cgroupfs", d.CgroupDriver)
	}
	if d.Registry == nil || d.Registry.Host == "" {
		return errors.New("no registry: set InitConfiguration deckhouse.imagesRepo")
	}
	if d.KubeadmConfig == "" {
		return errors.New("no kubeadm configuration")
	}
	if len(d.Packages) == 0 {
		return errors.New("no packages")
	}
	return nil
}

// Redacted is d with its secrets (registry password, bootstrap token, certificate key, proxy
// credentials) replaced, for printing.
func (d Data) Redacted(secrets ...string) Data {
	r := d
	if d.Registry != nil {
		reg := *d.Registry
		if reg.Password != "" {
			secrets = append(secrets, reg.Password)
			reg.Password = "<redacted>"
		}
		r.Registry = &reg
	}
	if d.Proxy != nil {
		p := *d.Proxy
		p.HTTP, p.HTTPS = redactURL(p.HTTP), redactURL(p.HTTPS)
		r.Proxy = &p
	}
	for _, s := range secrets {
		if s != "" {
			r.KubeadmConfig = strings.ReplaceAll(r.KubeadmConfig, s, "<redacted>")
		}
	}
	return r
}

func redactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		return scheme + "://<redacted>@" + rest[at+1:]
	}
	return u
}

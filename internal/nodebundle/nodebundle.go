// Package nodebundle is the node flow every operation that adds machines shares (bootstrap,
// converge, `bootstrap-phase execute-bashible-bundle`): the first control-plane node gets its
// bundle (packages, containerd, kubelet, kubeadm init), other nodes join. It wires the kubeadm
// documents, the node bundle, the packages endpoint, SSH and the join data of the cluster's local
// state (Nodes); Plan and Render are the pure part, for `config render` too.
package nodebundle

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/inventory"
	"github.com/dhctl-dev/dhctl/internal/kubeadm"
	"github.com/dhctl-dev/dhctl/internal/node"
	"github.com/dhctl-dev/dhctl/internal/packages"
	"github.com/dhctl-dev/dhctl/internal/ssh"
)

// Plan is what every node of a cluster shares: the release, the kubeadm input, the packages and
// the registry.
type Plan struct {
	Candi      fs.FS
	Minor      string
	Release    config.KubernetesRelease
	Kubeadm    kubeadm.Cluster
	Packages   []node.Package
	Registry   *node.Registry
	ImagesRepo string
	Sandbox    string
	Proxy      *node.Proxy
	// PlatformImage is pulled by control-plane nodes while they are prepared, with the node
	// images ("" = left to the kubelet).
	PlatformImage string
	cluster       config.ClusterConfiguration
	deckhouse     config.DeckhouseInit
	// nodeTemplate is a node group's nodeTemplate (config.Cluster.NodeTemplateOf).
	nodeTemplate func(group string) config.NodeTemplate
}

// NewPlan builds the plan from the configuration and the version map (with any override already
// applied). controlPlaneHost is the address nodes reach the API servers at (the first master's).
func NewPlan(candi fs.FS, c *config.Cluster, vm *config.VersionMap, controlPlaneHost string) (*Plan, error) {
	kc, err := kubeadm.FromConfig(c, vm, controlPlaneHost)
	if err != nil {
		return nil, err
	}
	minor := c.KubernetesVersion
	rel, _ := vm.Release(minor) // FromConfig checked it
	pkgs, err := node.PackagesFor(rel, minor)
	if err != nil {
		return nil, err
	}
	reg, err := node.RegistryFrom(c.InitConfiguration)
	if err != nil {
		return nil, err
	}
	sandbox, err := node.SandboxImage(kc.ImageRepository, rel)
	if err != nil {
		return nil, err
	}
	return &Plan{
		Candi: candi, Minor: minor, Release: rel, Kubeadm: kc, Packages: pkgs, Registry: reg,
		ImagesRepo: kc.ImageRepository, Sandbox: sandbox, Proxy: node.ProxyFrom(c.ClusterConfiguration),
		cluster: c.ClusterConfiguration, deckhouse: c.InitConfiguration.Deckhouse, nodeTemplate: c.NodeTemplateOf,
	}, nil
}

// imagesFor are the images a node of the role will run, pulled while it is prepared.
func (p *Plan) imagesFor(role inventory.Role) []string {
	controlPlane := role == inventory.Master
	imgs := p.deckhouse.NodeImageRefsFor(p.Release, controlPlane)
	if controlPlane && p.PlatformImage != "" {
		imgs = append(imgs, p.PlatformImage)
	}
	return imgs
}

// Target is one machine and what it becomes.
type Target struct {
	IP   string
	Role inventory.Role
	Init bool // the first control-plane node
	Host node.Host
	// Group is the node group; "" = "master" for masters, "worker" for workers.
	Group string
}

// registration is how a node of group registers: the group's label and the nodeTemplate labels
// the kubelet may set itself, and the nodeTemplate's taints (nil: kubeadm's default).
func (p *Plan) registration(t Target) (map[string]string, *[]kubeadm.Taint) {
	group := t.Group
	if group == "" {
		group = config.WorkerNodeGroup
		if t.Role == inventory.Master {
			group = config.MasterNodeGroup
		}
	}
	labels := map[string]string{config.NodeGroupLabel: group}
	if p.nodeTemplate == nil {
		return labels, nil
	}
	tmpl := p.nodeTemplate(group)
	for _, k := range tmpl.SortedLabels() {
		if kubeadm.KubeletMaySetLabel(k) {
			labels[k] = tmpl.Labels[k]
		}
	}
	if len(tmpl.Taints) == 0 {
		return labels, nil
	}
	taints := make([]kubeadm.Taint, 0, len(tmpl.Taints))
	for _, tt := range tmpl.Taints {
		taints = append(taints, kubeadm.Taint{Key: tt.Key, Value: tt.Value, Effect: tt.Effect})
	}
	return labels, &taints
}

// Render renders a node's bundle. For the first master, secrets are the bootstrap token and
// certificate key; for others, join says how to join.
func (p *Plan) Render(t Target, secrets kubeadm.Secrets, join kubeadm.JoinInfo) (*node.Bundle, node.Data, error) {
	kc := p.Kubeadm
	kc.CgroupDriver = t.Host.CgroupDriver
	n := kubeadm.Node{Name: t.Host.Hostname, IP: t.IP}
	n.Labels, n.Taints = p.registration(t)
	var cfg, discovery []byte
	var err error
	if t.Init {
		cfg, err = kubeadm.Init(kc, n, secrets)
	} else {
		cfg, err = kubeadm.Join(kc, n, join, t.Role == inventory.Master)
		if err == nil {
			discovery, err = kubeadm.DiscoveryKubeconfig(join)
		}
	}
	if err != nil {
		return nil, node.Data{}, fmt.Errorf("host %s: %w", t.IP, err)
	}
	d := node.Data{
		NodeName: t.Host.Hostname, NodeIP: t.IP, Role: t.Role, Init: t.Init, UploadCerts: t.Init && secrets.CertificateKey != "",
		OSFamily: t.Host.Family, KubernetesVersion: p.Release.Patch, CgroupDriver: t.Host.CgroupDriver,
		Packages: p.Packages, Registry: p.Registry, SandboxImage: p.Sandbox, Proxy: p.Proxy,
		ClusterDomain: p.cluster.ClusterDomain, PodSubnet: p.cluster.PodSubnetCIDR, ServiceSubnet: p.cluster.ServiceSubnetCIDR,
		KubeadmConfig: string(cfg), DiscoveryKubeconfig: string(discovery), PrePullImages: p.imagesFor(t.Role), ControlPlaneEndpoint: kc.ControlPlaneEndpoint,
	}
	b, err := node.Render(p.Candi, d)
	if err != nil {
		return nil, d, fmt.Errorf("host %s: %w", t.IP, err)
	}
	return b, d, nil
}

// PackagesOptions say where the packages endpoint takes files from.
type PackagesOptions struct {
	Upstream bool // from upstream URLs instead of the registry
	// Transport reaches the registry (nil = one trusting the registry CA of the configuration).
	Transport http.RoundTripper
	CacheDir  string
	Log       *slog.Logger
}

// StartPackages starts the packages endpoint for the plan's release on 127.0.0.1, and its
// prefetch of every file (the caller's Close stops both).
func (p *Plan) StartPackages(o PackagesOptions) (*packages.Server, string, error) {
	opts := packages.Options{Packages: p.Release.Packages, CacheDir: o.CacheDir, Log: o.Log}
	if !o.Upstream {
		tr := o.Transport
		if tr == nil {
			t, err := registryTransport(p.Registry.CA)
			if err != nil {
				return nil, "", err
			}
			tr = t
		}
		opts.Registry = &packages.Registry{Repo: p.ImagesRepo, User: p.Registry.User, Password: p.Registry.Password,
			Insecure: p.Registry.Scheme == "http", Transport: tr}
	}
	s, err := packages.New(opts)
	if err != nil {
		return nil, "", err
	}
	addr, err := s.Start()
	if err != nil {
		return nil, "", err
	}
	s.Prefetch()
	return s, addr, nil
}

func registryTransport(caPEM string) (http.RoundTripper, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caPEM != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM([]byte(caPEM)) {
			return nil, errors.New("InitConfiguration deckhouse.registryCA holds no PEM certificate")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return tr, nil
}

// Result of bootstrapping the first control-plane node.
type Result struct {
	Report     node.Report
	Join       kubeadm.JoinInfo // how other nodes join (token and certificate key are secret)
	Kubeconfig []byte           // admin kubeconfig (secret)
}

// BootstrapFirstMaster runs the first control-plane node's bundle and returns how others join.
// name is the node's name ("" = the host name the machine reports); group its node group ("" =
// master).
func (p *Plan) BootstrapFirstMaster(ctx context.Context, c *ssh.Client, ip, name, group string, secrets kubeadm.Secrets, o node.ExecOptions) (Result, error) {
	host, err := detectHost(ctx, c, name)
	if err != nil {
		return Result{}, err
	}
	b, _, err := p.Render(Target{IP: ip, Role: inventory.Master, Init: true, Host: host, Group: group}, secrets, kubeadm.JoinInfo{})
	if err != nil {
		return Result{}, err
	}
	o.Secrets = append(o.Secrets, secrets.Token, secrets.CertificateKey)
	rep, err := node.Execute(ctx, c, b, o)
	if err != nil {
		return Result{Report: rep}, err
	}
	ca, err := readRemote(ctx, c, "/etc/kubernetes/pki/ca.crt")
	if err != nil {
		return Result{Report: rep}, err
	}
	hash, err := kubeadm.CACertHash(ca)
	if err != nil {
		return Result{Report: rep}, fmt.Errorf("host %s: %w", c.Host(), err)
	}
	kubeconfig, err := readRemote(ctx, c, "/etc/kubernetes/admin.conf")
	if err != nil {
		return Result{Report: rep}, err
	}
	return Result{
		Report:     rep,
		Join:       kubeadm.JoinInfo{APIServerEndpoint: p.Kubeadm.ControlPlaneEndpoint, Token: secrets.Token, CACertHash: hash, CertificateKey: secrets.CertificateKey, CACert: string(ca)},
		Kubeconfig: kubeconfig,
	}, nil
}

// Join runs a joining node's bundle; name and group as for BootstrapFirstMaster ("" group =
// master or worker by role).
func (p *Plan) Join(ctx context.Context, c *ssh.Client, ip, name, group string, role inventory.Role, join kubeadm.JoinInfo, o node.ExecOptions) (node.Report, error) {
	host, err := detectHost(ctx, c, name)
	if err != nil {
		return node.Report{}, err
	}
	b, _, err := p.Render(Target{IP: ip, Role: role, Host: host, Group: group}, kubeadm.Secrets{}, join)
	if err != nil {
		return node.Report{}, err
	}
	o.Secrets = append(o.Secrets, join.Token, join.CertificateKey)
	return node.Execute(ctx, c, b, o)
}

// detectHost is the machine's OS and cgroup driver; its node name is name when dhctl made the
// machine (a cloud VM is named by its layout, whatever host name its image gives it).
func detectHost(ctx context.Context, c *ssh.Client, name string) (node.Host, error) {
	host, err := node.DetectHost(ctx, c)
	if err == nil && name != "" {
		host.Hostname = name
	}
	return host, err
}

func readRemote(ctx context.Context, c *ssh.Client, path string) ([]byte, error) {
	var b strings.Builder
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := c.Download(ctx, path, &b, true); err != nil {
		return nil, fmt.Errorf("host %s: reading %s: %w", c.Host(), path, err)
	}
	return []byte(b.String()), nil
}

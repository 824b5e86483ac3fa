package install

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/kubeadm"
)

// Images of the install, by their names in the version map (which holds every tag); where they
// are pulled from is config.DeckhouseInit's to say (docs/registry-layout.md).
const (
	FlannelImage = "flannel"
	CoreDNSImage = "coredns"

	// DefaultCNI is installed unless a ModuleConfig cni-<name> is enabled or --cni says otherwise.
	DefaultCNI = "flannel"
)

// The platform controller's contract, as Deckhouse's installer sets it up (templates/platform).
const (
	platformPort          = 4222 // ADDON_OPERATOR_LISTEN_PORT: probes and metrics
	platformAdmissionPort = 4223 // ADDON_OPERATOR_ADMISSION_SERVER_LISTEN_PORT: webhooks
	platformReadinessPath = "/readyz"

	// The deckhouse ModuleConfig's defaults, as Deckhouse's installer applies them.
	defaultBundle   = "Default"
	defaultLogLevel = "Info"
)

// Values are what the templates see (templates/README.md lists them).
type Values struct {
	ImagesRepo        string
	NodeImagesRepo    string
	Images            map[string]string
	PodSubnetCIDR     string
	ServiceSubnetCIDR string
	ClusterDomain     string
	CNI               CNIValues
	DNS               DNSValues
	Registry          RegistryValues
	Platform          PlatformValues
	InstallerVersion  string
}

// CNIValues configure the CNI templates.
type CNIValues struct {
	Name    string // directory under templates/cni
	Backend string // flannel: vxlan or host-gw
	// APIServer is where the CNI's agent reaches the API server (nil: the kubernetes Service).
	// A host-network agent that starts before kube-proxy has programmed its node would
	// otherwise dial the Service address into nothing and retry only after a 30 s timeout.
	APIServer *APIServerValues
}

// APIServerValues are an API server address.
type APIServerValues struct{ Host, Port string }

// DNSValues configure CoreDNS (templates/dns).
type DNSValues struct {
	ClusterIP string // the kube-dns Service's address, which every kubelet's clusterDNS names
	// ReadinessPeriodSeconds is how often the kubelet asks CoreDNS's /ready: wait-platform
	// waits for CoreDNS, so this bounds how long it waits after CoreDNS could answer.
	ReadinessPeriodSeconds int
}

// dnsReadinessPeriodSeconds: CoreDNS's /ready is a map lookup, so a 2 s cadence costs nothing.
const dnsReadinessPeriodSeconds = 2

// RegistryValues are the keys of the deckhouse-registry Secret. DockerConfigJSON is secret.
type RegistryValues struct {
	Address          string // host[:port]
	Path             string // "/path" or ""
	Scheme           string // http or https
	CA               string
	DockerConfigJSON string
}

// PlatformValues configure the platform Deployment and its deckhouse ModuleConfig.
type PlatformValues struct {
	Image           string // full reference
	DeckhouseLayout bool   // Image is <imagesRepo>:<tag> (a Deckhouse registry)
	Port            int
	AdmissionPort   int
	ReadinessPath   string
	Bundle          string // DECKHOUSE_BUNDLE, the deckhouse ModuleConfig's settings.bundle
	LogLevel        string // LOG_LEVEL, settings.logLevel
	// ReleaseChannel is settings.releaseChannel, held back until the platform is ready (applied
	// by install/release-channel), so that it does not update itself mid-bootstrap; "" = none.
	ReleaseChannel string
}

// newValues computes the template values from the configuration.
func newValues(c *config.Cluster, vm *config.VersionMap, cni, platformImage, installerVersion string, fsys fs.FS) (*Values, error) {
	if c.InitConfiguration == nil {
		return nil, fmt.Errorf("install needs an InitConfiguration document: its deckhouse.imagesRepo says where images come from")
	}
	init := c.InitConfiguration.Deckhouse
	repo := init.ImagesRepository()
	if repo == "" {
		return nil, fmt.Errorf("InitConfiguration: deckhouse.imagesRepo is empty: set it to the registry path holding the images, e.g. registry.example.com/dhctl")
	}
	reg, err := registryValues(repo, init)
	if err != nil {
		return nil, err
	}
	cniValues, err := chooseCNI(c, cni, fsys)
	if err != nil {
		return nil, err
	}
	if vm == nil {
		return nil, fmt.Errorf("install: no version map")
	}
	rel, ok := vm.Release(c.KubernetesVersion)
	if !ok {
		return nil, fmt.Errorf("ClusterConfiguration kubernetesVersion %q: not in the version map (supported: %s)", c.KubernetesVersion, strings.Join(vm.Supported(), ", "))
	}
	nodeRepo := init.NodeImagesRepository()
	flannel, err := flatImage(nodeRepo, rel, FlannelImage)
	if err != nil {
		return nil, err
	}
	coredns, err := flatImage(nodeRepo, rel, CoreDNSImage)
	if err != nil {
		return nil, err
	}
	cc := c.ClusterConfiguration
	clusterDNS, err := kubeadm.ClusterDNS(cc.ServiceSubnetCIDR)
	if err != nil {
		return nil, fmt.Errorf("ClusterConfiguration serviceSubnetCIDR: %w", err)
	}
	platform, err := init.PlatformImageRef(platformImage, rel)
	if err != nil {
		return nil, err
	}
	settings := deckhouseSettings(c)
	pv := PlatformValues{
		Image: platform, DeckhouseLayout: init.DeckhouseLayout(platform),
		Port: platformPort, AdmissionPort: platformAdmissionPort, ReadinessPath: platformReadinessPath,
		Bundle: defaultBundle, LogLevel: defaultLogLevel,
	}
	if v, _ := settings["bundle"].(string); v != "" {
		pv.Bundle = v
	}
	if v, _ := settings["logLevel"].(string); v != "" {
		pv.LogLevel = v
	}
	pv.ReleaseChannel, _ = settings["releaseChannel"].(string)
	if installerVersion == "" {
		installerVersion = "devel"
	}
	return &Values{
		ImagesRepo:        repo,
		NodeImagesRepo:    nodeRepo,
		InstallerVersion:  installerVersion,
		Images:            map[string]string{"flannel": flannel, "coredns": coredns, "platform": platform},
		PodSubnetCIDR:     cc.PodSubnetCIDR,
		ServiceSubnetCIDR: cc.ServiceSubnetCIDR,
		ClusterDomain:     cc.ClusterDomain,
		CNI:               cniValues,
		DNS:               DNSValues{ClusterIP: clusterDNS, ReadinessPeriodSeconds: dnsReadinessPeriodSeconds},
		Registry:          reg,
		Platform:          pv,
	}, nil
}

// deckhouseSettings are the settings of the configuration's deckhouse ModuleConfig (nil without one).
func deckhouseSettings(c *config.Cluster) map[string]any {
	for _, mc := range c.ModuleConfigs {
		if mc.Metadata.Name == DeckhouseModuleConfig {
			return mc.Spec.Settings
		}
	}
	return nil
}

func registryValues(repo string, init config.DeckhouseInit) (RegistryValues, error) {
	address, p, _ := strings.Cut(repo, "/")
	if p != "" {
		p = "/" + p
	}
	scheme := strings.ToLower(init.RegistryScheme)
	if scheme == "" {
		scheme = "https"
	}
	r := RegistryValues{Address: address, Path: p, Scheme: scheme, CA: init.RegistryCA}
	if init.RegistryDockerCfg == "" {
		// Anonymous pulls: a valid, empty entry for the registry.
		js, err := json.Marshal(map[string]any{"auths": map[string]any{address: map[string]any{}}})
		if err != nil {
			return r, err
		}
		r.DockerConfigJSON = string(js)
		return r, nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(init.RegistryDockerCfg))
	if err != nil {
		return r, fmt.Errorf("InitConfiguration: deckhouse.registryDockerCfg is not base64 (want base64 of a docker config.json: base64 -w0 < config.json)")
	}
	var probe struct {
		Auths map[string]json.RawMessage `json:"auths"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil || probe.Auths == nil {
		return r, fmt.Errorf("InitConfiguration: deckhouse.registryDockerCfg does not decode to a docker config.json with an \"auths\" object")
	}
	r.DockerConfigJSON = string(raw)
	return r, nil
}

// chooseCNI picks the CNI: the explicit choice, else the one ModuleConfig cni-<name> enables
// (Deckhouse's convention), else DefaultCNI; its templates must exist under cni/<name>.
func chooseCNI(c *config.Cluster, explicit string, fsys fs.FS) (CNIValues, error) {
	name := explicit
	var settings map[string]any
	var enabled []string
	for _, mc := range c.ModuleConfigs {
		n, ok := strings.CutPrefix(mc.Metadata.Name, "cni-")
		if !ok || mc.Spec.Enabled == nil || !*mc.Spec.Enabled {
			continue
		}
		enabled = append(enabled, n)
		if explicit == "" || explicit == n {
			settings = mc.Spec.Settings
		}
	}
	if name == "" {
		switch len(enabled) {
		case 0:
			name = DefaultCNI
		case 1:
			name = enabled[0]
		default:
			return CNIValues{}, fmt.Errorf("ModuleConfigs enable several CNIs (%s): enable exactly one cni-<name> module", strings.Join(enabled, ", "))
		}
	}
	available, err := availableCNIs(fsys)
	if err != nil {
		return CNIValues{}, err
	}
	if !contains(available, name) {
		return CNIValues{}, fmt.Errorf("CNI %q has no templates in this dhctl; available: %s", name, strings.Join(available, ", "))
	}
	v := CNIValues{Name: name, Backend: "vxlan"}
	if mode, _ := settings["podNetworkMode"].(string); name == "flannel" && mode != "" {
		switch strings.ToLower(mode) {
		case "vxlan":
			v.Backend = "vxlan"
		case "hostgw", "host-gw":
			v.Backend = "host-gw"
		default:
			return CNIValues{}, fmt.Errorf("ModuleConfig cni-flannel: settings.podNetworkMode %q: want VXLAN or HostGW", mode)
		}
	}
	return v, nil
}

func availableCNIs(fsys fs.FS) ([]string, error) {
	entries, err := fs.ReadDir(fsys, "cni")
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// flatImage is a version map image in dhctl's layout: <repo>/<name>:<tag>.
func flatImage(repo string, rel config.KubernetesRelease, name string) (string, error) {
	img, ok := rel.Images[name]
	if !ok || img.Tag == "" {
		return "", fmt.Errorf("version map: no %s image for Kubernetes %s", name, rel.Patch)
	}
	return repo + "/" + name + ":" + img.Tag, nil
}

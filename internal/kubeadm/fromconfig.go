package kubeadm

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/dhctl-dev/dhctl/internal/config"
)

// FromConfig builds the cluster-wide kubeadm input from the configuration and the version map:
// the release of the configured minor, the registry, the address ranges, and any
// KubeletConfiguration or KubeProxyConfiguration document given with the configuration (merged
// over the generated ones, e.g. kube-proxy's `conntrack: {maxPerCore: 0}` where
// nf_conntrack_max cannot be set). controlPlaneHost is the first control-plane node's address
// (or a load balancer's).
func FromConfig(c *config.Cluster, vm *config.VersionMap, controlPlaneHost string) (Cluster, error) {
	if c == nil {
		return Cluster{}, errors.New("kubeadm: no configuration")
	}
	minor := c.KubernetesVersion // resolved once, by config.Load ("Automatic" is the map's default)
	rel, ok := vm.Release(minor)
	if !ok {
		return Cluster{}, fmt.Errorf("ClusterConfiguration kubernetesVersion %q: not in the version map (supported: %s)", minor, strings.Join(vm.Supported(), ", "))
	}
	if c.InitConfiguration == nil || c.InitConfiguration.Deckhouse.ImagesRepo == "" {
		return Cluster{}, errors.New("InitConfiguration deckhouse.imagesRepo is not set: nodes pull every image from it")
	}
	var mask int
	if p := c.ClusterConfiguration.PodSubnetNodeCIDRPrefix; p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return Cluster{}, fmt.Errorf("ClusterConfiguration podSubnetNodeCIDRPrefix %q is not a prefix length", p)
		}
		mask = n
	}
	out := Cluster{
		KubernetesVersion:    rel.Patch,
		ImageRepository:      c.InitConfiguration.Deckhouse.NodeImagesRepository(),
		ControlPlaneEndpoint: Endpoint(controlPlaneHost),
		PodSubnet:            c.ClusterConfiguration.PodSubnetCIDR,
		NodeCIDRMaskSize:     mask,
		ServiceSubnet:        c.ClusterConfiguration.ServiceSubnetCIDR,
		ClusterDomain:        c.ClusterConfiguration.ClusterDomain,
	}
	for _, d := range c.Resources {
		if !IsComponentConfig(d.APIVersion, d.Kind) {
			continue
		}
		if d.Kind == "KubeProxyConfiguration" {
			out.KubeProxyOverrides = d.Object
		} else {
			out.KubeletOverrides = d.Object
		}
	}
	return out, out.validate()
}

// IsComponentConfig says whether a configuration document is one FromConfig consumes
// (KubeletConfiguration, KubeProxyConfiguration): node settings, not objects to create in the
// cluster.
func IsComponentConfig(apiVersion, kind string) bool {
	return apiVersion == KubeProxyAPIVersion && kind == "KubeProxyConfiguration" ||
		apiVersion == KubeletAPIVersion && kind == "KubeletConfiguration"
}

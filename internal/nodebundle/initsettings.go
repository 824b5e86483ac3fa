package nodebundle

import (
	"fmt"
	"strings"

	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/config"
)

// InitSettingsOf are the settings kubeadm init fixes, as the configuration gives them.
func InitSettingsOf(c *config.Cluster) clusterstate.InitSettings {
	cc := c.ClusterConfiguration
	return clusterstate.InitSettings{PodSubnetCIDR: cc.PodSubnetCIDR, ServiceSubnetCIDR: cc.ServiceSubnetCIDR,
		ClusterDomain: cc.ClusterDomain, KubernetesVersion: c.KubernetesVersion}
}

// UnsafeChangeError says which settings kubeadm init fixed differ from the configuration.
type UnsafeChangeError struct {
	Changes []string // "ClusterConfiguration.podSubnetCIDR: 10.111.0.0/16 at init, now 10.112.0.0/16"
}

func (e *UnsafeChangeError) Error() string {
	return "the configuration changes what kubeadm init already fixed on the first master:\n  " +
		strings.Join(e.Changes, "\n  ") +
		"\nthese cannot change on an initialised control plane: put the values back in --config to resume the bootstrap, " +
		"or remove the cluster (dhctl bootstrap-phase abort) and bootstrap again with the new values"
}

// CheckUnsafeChanges compares the configuration with the settings recorded when the first
// master's bundle (kubeadm init) was started; none recorded means nothing was initialised yet.
func CheckUnsafeChanges(l *clusterstate.Local, c *config.Cluster) error {
	was, err := l.InitSettings()
	if err != nil || was == nil {
		return err
	}
	if changes := SettingsChanges(*was, InitSettingsOf(c), "at init, now"); len(changes) > 0 {
		return &UnsafeChangeError{Changes: changes}
	}
	return nil
}

// SettingsChanges lists the settings kubeadm init fixes that differ between was and now, each as
// `ClusterConfiguration.<field>: "<was>" <between> "<now>"`: what a running control plane
// cannot take.
func SettingsChanges(was, now clusterstate.InitSettings, between string) []string {
	var changes []string
	for _, f := range []struct{ field, was, now string }{
		{"ClusterConfiguration.podSubnetCIDR", was.PodSubnetCIDR, now.PodSubnetCIDR},
		{"ClusterConfiguration.serviceSubnetCIDR", was.ServiceSubnetCIDR, now.ServiceSubnetCIDR},
		{"ClusterConfiguration.clusterDomain", was.ClusterDomain, now.ClusterDomain},
		{"ClusterConfiguration.kubernetesVersion", was.KubernetesVersion, now.KubernetesVersion},
	} {
		if f.was != f.now {
			changes = append(changes, fmt.Sprintf("%s: %q %s %q", f.field, f.was, between, f.now))
		}
	}
	return changes
}

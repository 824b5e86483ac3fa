package converge

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/exitcode"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/nodebundle"
)

// storedConfig is what a converge with --config will keep in the cluster: the configuration's
// documents, once checked against those the cluster keeps.
type storedConfig struct {
	snap    *clusterstate.Snapshot
	changed []string // the kinds whose stored document --config changes
}

// checkStoredConfig compares --config with the configuration the cluster keeps: what the
// cluster was made with (its type, what kubeadm init fixed) cannot change, and such a --config
// is refused before anything changes; the documents that differ are listed.
func checkStoredConfig(ctx context.Context, o Options, k *kube.Client) (*storedConfig, error) {
	snap, err := clusterstate.Read(ctx, k.Typed(), k.Host())
	var none *clusterstate.NoClusterStateError
	switch {
	case errors.As(err, &none):
		return &storedConfig{snap: &clusterstate.Snapshot{}, changed: []string{"all"}}, nil
	case err != nil:
		return nil, err
	}
	var stored struct {
		ClusterType       string `json:"clusterType"`
		PodSubnetCIDR     string `json:"podSubnetCIDR"`
		ServiceSubnetCIDR string `json:"serviceSubnetCIDR"`
		ClusterDomain     string `json:"clusterDomain"`
	}
	if err := sigsyaml.Unmarshal(snap.ClusterConfiguration, &stored); err != nil {
		return nil, fmt.Errorf("the ClusterConfiguration the cluster keeps (%s/%s) does not parse: %w", clusterstate.ConfigNamespace, clusterstate.ClusterConfigurationSecret, err)
	}
	if stored.ClusterDomain == "" {
		stored.ClusterDomain = "cluster.local"
	}
	was := clusterstate.InitSettings{PodSubnetCIDR: stored.PodSubnetCIDR, ServiceSubnetCIDR: stored.ServiceSubnetCIDR,
		ClusterDomain: stored.ClusterDomain, KubernetesVersion: snap.MaxUsedControlPlaneKubernetesVersion}
	changes := nodebundle.SettingsChanges(was, nodebundle.InitSettingsOf(o.Config), "in the cluster, --config has")
	if now := o.Config.ClusterConfiguration.ClusterType; stored.ClusterType != "" && stored.ClusterType != now {
		changes = append(changes, fmt.Sprintf("ClusterConfiguration.clusterType: %q in the cluster, --config has %q", stored.ClusterType, now))
	}
	if len(changes) > 0 {
		return nil, exitcode.Usage(fmt.Errorf("--config changes what the cluster was made with, which a running cluster cannot take:\n  %s\nnothing was changed: put the cluster's values back in --config (dhctl config edit shows them)", strings.Join(changes, "\n  ")))
	}
	objs, err := clusterstate.ConfigObjects(o.Config, snap.ProviderDiscoveryData)
	if err != nil {
		return nil, err
	}
	sc := &storedConfig{snap: snap}
	stores := map[string][]byte{
		clusterstate.ClusterConfigurationSecret:  snap.ClusterConfiguration,
		clusterstate.ProviderConfigurationSecret: snap.ProviderClusterConfiguration,
		clusterstate.StaticConfigurationSecret:   snap.StaticClusterConfiguration,
		clusterstate.InitConfigurationSecret:     snap.InitConfiguration,
	}
	for _, obj := range objs {
		for key, value := range secretData(obj) {
			if strings.HasSuffix(key, ".yaml") && !bytes.Equal(value, stores[obj.GetName()]) {
				sc.changed = append(sc.changed, obj.GetName())
			}
		}
	}
	return sc, nil
}

// store keeps --config's documents in the cluster when they differ from the stored ones.
func (sc *storedConfig) store(ctx context.Context, o Options, k *kube.Client) error {
	if len(sc.changed) == 0 {
		return nil
	}
	objs, err := clusterstate.ConfigObjects(o.Config, sc.snap.ProviderDiscoveryData)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := k.ApplyAll(cctx, objs, kube.ApplyOptions{}); err != nil {
		return fmt.Errorf("keeping --config's documents in the cluster: %w", err)
	}
	fmt.Fprintf(o.Out, "configuration kept in the cluster (%s)\n", strings.Join(sc.changed, ", "))
	return nil
}

// secretData is a Secret object's data, decoded.
func secretData(obj *unstructured.Unstructured) map[string][]byte {
	raw, _, _ := unstructured.NestedStringMap(obj.Object, "data")
	out := make(map[string][]byte, len(raw))
	for k, v := range raw {
		if b, err := base64.StdEncoding.DecodeString(v); err == nil {
			out[k] = b
		}
	}
	return out
}

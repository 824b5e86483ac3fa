package kubeadm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// ParseInit reads back the configuration `kubeadm init` ran with (what Init wrote to the first
// control-plane node): its InitConfiguration (the certificate key, the node's address) and its
// ClusterConfiguration (the control-plane endpoint). A joined node's configuration (a
// JoinConfiguration) is an error that says so: only the first master has these.
func ParseInit(data []byte) (InitConfiguration, ClusterConfiguration, error) {
	var init InitConfiguration
	var cluster ClusterConfiguration
	var kinds []string
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return init, cluster, fmt.Errorf("kubeadm configuration: %w", err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var meta TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return init, cluster, fmt.Errorf("kubeadm configuration, document %d: %w", len(kinds)+1, err)
		}
		kinds = append(kinds, meta.Kind)
		switch meta.Kind {
		case "InitConfiguration":
			err = yaml.Unmarshal(doc, &init)
		case "ClusterConfiguration":
			err = yaml.Unmarshal(doc, &cluster)
		}
		if err != nil {
			return init, cluster, fmt.Errorf("kubeadm configuration, %s: %w", meta.Kind, err)
		}
	}
	if init.Kind == "" {
		return init, cluster, fmt.Errorf("not the configuration of kubeadm init (it holds %v): this node joined the cluster, it was not the first control-plane node", kinds)
	}
	if cluster.Kind == "" {
		return init, cluster, fmt.Errorf("kubeadm init's configuration has no ClusterConfiguration (it holds %v)", kinds)
	}
	return init, cluster, nil
}

package nodegroup

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/dhctl-dev/dhctl/internal/config"
)

// Kinds of Deckhouse's documents for static machines.
const (
	KindStaticInstance = "StaticInstance"
	KindSSHCredentials = "SSHCredentials"
)

// StaticInstance is a machine a Static NodeGroup may take (Deckhouse's StaticInstance): its
// address, the SSHCredentials to log in with, and labels a group's labelSelector matches.
type StaticInstance struct {
	Name        string
	Labels      map[string]string
	Address     string
	Credentials string // the SSHCredentials' name
}

// SSHCredentials is how dhctl logs in to StaticInstances (Deckhouse's SSHCredentials). The key
// and the sudo password are secret: never logged, never in an error.
type SSHCredentials struct {
	Name         string
	User         string
	Port         int // 0: the default
	PrivateKey   []byte
	SudoPassword string
}

// staticInstanceDoc and sshCredentialsDoc are the documents' shapes (Deckhouse's fields).
type staticInstanceDoc struct {
	Metadata config.ObjectMeta `json:"metadata"`
	Spec     struct {
		Address        string `json:"address"`
		CredentialsRef struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"credentialsRef"`
	} `json:"spec"`
}

type sshCredentialsDoc struct {
	Metadata config.ObjectMeta `json:"metadata"`
	Spec     struct {
		User                string `json:"user"`
		SSHPort             int    `json:"sshPort"`
		PrivateSSHKey       string `json:"privateSSHKey"`       // base64
		SudoPasswordEncoded string `json:"sudoPasswordEncoded"` // base64
	} `json:"spec"`
}

// DocumentError is a StaticInstance or SSHCredentials document that cannot be used: which one,
// which field, and the fix.
type DocumentError struct {
	Where, Field, Problem, Fix string
}

func (e *DocumentError) Error() string {
	return fmt.Sprintf("%s: %s: %s (%s)", e.Where, e.Field, e.Problem, e.Fix)
}

// StaticMachines reads the StaticInstance and SSHCredentials documents among docs (the
// configuration's resources). Every instance must name credentials that are there.
func StaticMachines(docs []config.Document) ([]StaticInstance, map[string]SSHCredentials, error) {
	var instances []StaticInstance
	creds := map[string]SSHCredentials{}
	for _, d := range docs {
		where := fmt.Sprintf("%s document %d (%s %s)", d.File, d.Index, d.Kind, d.Name)
		js, err := json.Marshal(d.Object)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", where, err)
		}
		switch d.Kind {
		case KindStaticInstance:
			var doc staticInstanceDoc
			if err := json.Unmarshal(js, &doc); err != nil {
				return nil, nil, &DocumentError{where, "spec", err.Error(), "see Deckhouse's StaticInstance: spec.address and spec.credentialsRef"}
			}
			if net.ParseIP(doc.Spec.Address) == nil {
				return nil, nil, &DocumentError{where, "spec.address", fmt.Sprintf("%q is not an IP address", doc.Spec.Address), "give the machine's IP address"}
			}
			if doc.Spec.CredentialsRef.Name == "" {
				return nil, nil, &DocumentError{where, "spec.credentialsRef.name", "is missing", "name the SSHCredentials to log in with"}
			}
			if k := doc.Spec.CredentialsRef.Kind; k != "" && k != KindSSHCredentials {
				return nil, nil, &DocumentError{where, "spec.credentialsRef.kind", fmt.Sprintf("%q is not %s", k, KindSSHCredentials), "use kind: SSHCredentials"}
			}
			instances = append(instances, StaticInstance{Name: doc.Metadata.Name, Labels: doc.Metadata.Labels, Address: doc.Spec.Address, Credentials: doc.Spec.CredentialsRef.Name})
		case KindSSHCredentials:
			var doc sshCredentialsDoc
			if err := json.Unmarshal(js, &doc); err != nil {
				return nil, nil, &DocumentError{where, "spec", "does not have the shape of SSHCredentials", "see Deckhouse's SSHCredentials: spec.user and spec.privateSSHKey"}
			}
			if doc.Spec.User == "" {
				return nil, nil, &DocumentError{where, "spec.user", "is missing", "give the login user"}
			}
			key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(doc.Spec.PrivateSSHKey))
			if err != nil || len(key) == 0 {
				return nil, nil, &DocumentError{where, "spec.privateSSHKey", "is missing or not base64", "give the private key base64-encoded (base64 -w0 < key)"}
			}
			sudo, err := base64.StdEncoding.DecodeString(doc.Spec.SudoPasswordEncoded)
			if err != nil {
				return nil, nil, &DocumentError{where, "spec.sudoPasswordEncoded", "is not base64", "give the sudo password base64-encoded, or leave it out"}
			}
			creds[doc.Metadata.Name] = SSHCredentials{Name: doc.Metadata.Name, User: doc.Spec.User, Port: doc.Spec.SSHPort, PrivateKey: key, SudoPassword: string(sudo)}
		}
	}
	for _, in := range instances {
		if _, ok := creds[in.Credentials]; !ok {
			return nil, nil, &DocumentError{"StaticInstance " + in.Name, "spec.credentialsRef.name",
				fmt.Sprintf("SSHCredentials %q is not among the documents", in.Credentials), "add that SSHCredentials document to --config"}
		}
	}
	sort.Slice(instances, func(i, j int) bool { return instances[i].Name < instances[j].Name })
	return instances, creds, nil
}

// StaticPlan is what a Static NodeGroup with staticInstances needs: machines to join and
// nodes to remove.
type StaticPlan struct {
	Group string
	// Create are the selected instances no node runs on yet.
	Create []StaticInstance
	// Remove are nodes of the group on an instance the group no longer selects.
	Remove []RemoveNode
	// Warnings are what the plan leaves alone, and why.
	Warnings []string
}

// RemoveNode is a node to take out of its group, and the instance it runs on.
type RemoveNode struct {
	Node     string
	Instance StaticInstance
}

// Selects reports whether g's labelSelector matches an instance's labels.
func Selects(g config.NodeGroup, in StaticInstance) bool {
	si := g.Spec.StaticInstances
	if si == nil || si.LabelSelector == nil {
		return true
	}
	for k, v := range si.LabelSelector.MatchLabels {
		if in.Labels[k] != v {
			return false
		}
	}
	return true
}

// PlanStatic plans group g: it takes, of the instances its labelSelector matches (by name), the
// first spec.staticInstances.count; a selected instance without a node is created, a node of
// the group on an instance not selected is removed. A node on no known instance (one joined by
// hand or with --worker-host) is never removed. The master group is planned the same way: its
// machines join and leave the control plane. ok is false for a group that is not Static with
// staticInstances.
func PlanStatic(g config.NodeGroup, instances []StaticInstance, nodes []corev1.Node) (plan StaticPlan, ok bool) {
	si := g.Spec.StaticInstances
	if g.Spec.NodeType != config.NodeTypeStatic || si == nil {
		return StaticPlan{}, false
	}
	plan.Group = g.Metadata.Name
	want := 0
	if si.Count != nil {
		want = *si.Count
	}
	var matching []StaticInstance
	for _, in := range instances {
		if Selects(g, in) {
			matching = append(matching, in)
		}
	}
	if len(matching) < want {
		plan.Warnings = append(plan.Warnings, fmt.Sprintf("NodeGroup %s wants %d static nodes but only %d StaticInstances match its labelSelector: add StaticInstance documents", g.Metadata.Name, want, len(matching)))
		want = len(matching)
	}
	selected := matching[:want]

	byAddress := map[string]*corev1.Node{}
	for i := range nodes {
		if a := InternalIP(&nodes[i]); a != "" {
			byAddress[a] = &nodes[i]
		}
	}
	for _, in := range selected {
		n, ok := byAddress[in.Address]
		switch {
		case !ok:
			plan.Create = append(plan.Create, in)
		case GroupOf(n) != g.Metadata.Name:
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("StaticInstance %s (%s) is node %s of group %q, not of %s: left as it is", in.Name, in.Address, n.Name, GroupOf(n), g.Metadata.Name))
		}
	}
	for _, in := range instances {
		n, ok := byAddress[in.Address]
		if !ok || GroupOf(n) != g.Metadata.Name || slices.ContainsFunc(selected, func(s StaticInstance) bool { return s.Name == in.Name }) {
			continue
		}
		plan.Remove = append(plan.Remove, RemoveNode{Node: n.Name, Instance: in})
	}
	return plan, true
}

// InternalIP is a node's InternalIP address ("" when it reports none).
func InternalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// StaticInstanceResource and SSHCredentialsResource are the kinds' resources (Deckhouse's
// node-manager's, served by the CRDs install creates).
func StaticInstanceResource() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "deckhouse.io", Version: "v1alpha1", Resource: "staticinstances"}
}

func SSHCredentialsResource() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "deckhouse.io", Version: "v1alpha1", Resource: "sshcredentials"}
}

// ReadStaticMachines reads the cluster's StaticInstances and SSHCredentials, checked as the
// configuration's documents are (an error names the object, the field and the fix). A cluster
// without the kinds has none.
func ReadStaticMachines(ctx context.Context, dyn dynamic.Interface) ([]StaticInstance, map[string]SSHCredentials, error) {
	var docs []config.Document
	for _, r := range []struct {
		res  schema.GroupVersionResource
		kind string
	}{{StaticInstanceResource(), KindStaticInstance}, {SSHCredentialsResource(), KindSSHCredentials}} {
		lctx, cancel := context.WithTimeout(ctx, callTimeout)
		list, err := dyn.Resource(r.res).List(lctx, metav1.ListOptions{})
		cancel()
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("listing the cluster's %s objects: %w", r.kind, err)
		}
		for i, item := range list.Items {
			docs = append(docs, config.Document{File: "the cluster", Index: i + 1, APIVersion: item.GetAPIVersion(), Kind: r.kind, Name: item.GetName(), Object: item.Object})
		}
	}
	return StaticMachines(docs)
}

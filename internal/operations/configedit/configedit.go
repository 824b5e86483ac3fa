// Package configedit is `dhctl config edit`: one of the configuration documents a cluster keeps
// (kube-system/d8-cluster-configuration, d8-provider-cluster-configuration,
// d8-static-cluster-configuration) is handed to an editor, checked with the same schemas and
// rules as --config, and saved only when it is valid and changes nothing kubeadm fixed at the
// bootstrap. It holds the converge lock meanwhile, and saves with the Secret's resourceVersion,
// so an edit never overwrites a change made since it was read.
package configedit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/exitcode"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/nodebundle"
)

// The documents that can be edited, by the names the command takes (Deckhouse's).
const (
	ClusterConfiguration         = "cluster-configuration"
	ProviderClusterConfiguration = "provider-cluster-configuration"
	StaticClusterConfiguration   = "static-cluster-configuration"
)

// Documents are the names Run accepts.
func Documents() []string {
	return []string{ClusterConfiguration, ProviderClusterConfiguration, StaticClusterConfiguration}
}

// Options are what an edit needs.
type Options struct {
	Kube func(ctx context.Context) (*kube.Client, error)
	// Document is one of Documents().
	Document string
	// Edit lets the user change the file at path (an editor on the terminal).
	Edit func(path string) error
	// Holder names the lock's holder ("" = kube.Holder()).
	Holder string
	Out    io.Writer
}

// where is the Secret and key holding a document.
func where(doc string) (name, key string, ok bool) {
	switch doc {
	case ClusterConfiguration:
		return clusterstate.ClusterConfigurationSecret, clusterstate.ClusterConfigurationKey, true
	case ProviderClusterConfiguration:
		return clusterstate.ProviderConfigurationSecret, clusterstate.ProviderConfigurationKey, true
	case StaticClusterConfiguration:
		return clusterstate.StaticConfigurationSecret, clusterstate.StaticConfigurationKey, true
	}
	return "", "", false
}

// Run edits the document and saves it when valid.
func Run(ctx context.Context, o Options) error {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Holder == "" {
		o.Holder = kube.Holder()
	}
	name, key, ok := where(o.Document)
	if !ok {
		return exitcode.Usage(fmt.Errorf("no document %q to edit: want one of %v", o.Document, Documents()))
	}
	k, err := o.Kube(ctx)
	if err != nil {
		return fmt.Errorf("reaching the API server: %w", err)
	}
	defer k.Close()
	lock, err := kube.AcquireLock(ctx, k.Typed(), o.Holder+" (config edit)", 0)
	if err != nil {
		return err
	}
	defer func() { _ = lock.Release(context.WithoutCancel(ctx)) }()

	snap, err := clusterstate.Read(ctx, k.Typed(), k.Host())
	if err != nil {
		return err
	}
	docs := map[string][]byte{ClusterConfiguration: snap.ClusterConfiguration,
		ProviderClusterConfiguration: snap.ProviderClusterConfiguration, StaticClusterConfiguration: snap.StaticClusterConfiguration}
	original := docs[o.Document]
	if len(bytes.TrimSpace(original)) == 0 {
		return exitcode.Usage(fmt.Errorf("the cluster has no %s (Secret %s/%s): nothing to edit", o.Document, clusterstate.ConfigNamespace, name))
	}

	// The document may hold secrets (a cloud's password): a private directory, a 0600 file.
	dir, err := os.MkdirTemp("", "dhctl-config-edit-")
	if err != nil {
		return err
	}
	keep := false
	defer func() {
		if !keep {
			os.RemoveAll(dir)
		}
	}()
	path := filepath.Join(dir, o.Document+".yaml")
	if err := os.WriteFile(path, original, 0o600); err != nil {
		return err
	}
	if err := o.Edit(path); err != nil {
		return fmt.Errorf("the editor failed (nothing was saved): %w", err)
	}
	edited, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if bytes.Equal(edited, original) {
		fmt.Fprintf(o.Out, "%s unchanged: nothing saved\n", o.Document)
		return nil
	}
	if err := check(ctx, dir, docs, o.Document, edited); err != nil {
		keep = true
		return exitcode.Usage(fmt.Errorf("%w\nnothing was saved; your edit is kept in %s (0600): fix it there and run the command again, or delete it", err, path))
	}

	// Saved over exactly what was read: a change made meanwhile is not overwritten.
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	secrets := k.Typed().CoreV1().Secrets(clusterstate.ConfigNamespace)
	s, err := secrets.Get(sctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading Secret %s/%s to save the edit: %w", clusterstate.ConfigNamespace, name, err)
	}
	if !bytes.Equal(s.Data[key], original) {
		keep = true
		return fmt.Errorf("the Secret %s/%s changed while it was being edited: nothing was saved (your edit is kept in %s); run the command again", clusterstate.ConfigNamespace, name, path)
	}
	s.Data[key] = edited
	if _, err := secrets.Update(sctx, s, metav1.UpdateOptions{FieldManager: kube.FieldManager}); err != nil {
		keep = true
		return fmt.Errorf("saving Secret %s/%s: %w (your edit is kept in %s)", clusterstate.ConfigNamespace, name, err, path)
	}
	fmt.Fprintf(o.Out, "%s saved (Secret %s/%s)\n", o.Document, clusterstate.ConfigNamespace, name)
	return nil
}

// check loads the stored documents with the edited one in its place, with the rules of --config,
// and refuses changes to what kubeadm fixed when the cluster was made.
func check(ctx context.Context, dir string, docs map[string][]byte, doc string, edited []byte) error {
	load := func(name string, replace []byte) (*config.Cluster, error) {
		var b bytes.Buffer
		for _, d := range Documents() {
			content := docs[d]
			if d == doc && replace != nil {
				content = replace
			}
			if len(bytes.TrimSpace(content)) == 0 {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("\n---\n")
			}
			b.Write(content)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
			return nil, err
		}
		return config.Load(ctx, config.LoadOptions{ConfigPaths: []string{p}})
	}
	before, err := load("stored.yaml", nil)
	if err != nil {
		return fmt.Errorf("the documents the cluster holds do not load (%w): edit them with kubectl", err)
	}
	after, err := load("edited.yaml", edited)
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			return fmt.Errorf("the edited %s is not valid:\n%w", doc, err)
		}
		return err
	}
	changed := nodebundle.SettingsChanges(nodebundle.InitSettingsOf(before), nodebundle.InitSettingsOf(after), "->")
	if was, now := before.ClusterConfiguration.ClusterType, after.ClusterConfiguration.ClusterType; was != now {
		changed = append(changed, fmt.Sprintf("ClusterConfiguration.clusterType: %q -> %q", was, now))
	}
	if len(changed) > 0 {
		return fmt.Errorf("the edit changes what the running cluster was made with, which cannot change in place (a Kubernetes upgrade is not supported yet): %v; put the values back", changed)
	}
	return nil
}

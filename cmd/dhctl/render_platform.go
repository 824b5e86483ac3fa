package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/dhctl-dev/dhctl/internal/install"
	"github.com/dhctl-dev/dhctl/internal/kube"
)

// newRenderPlatformCommand prints the platform's objects as install/platform applies them, and
// where every image comes from: the question an operator with a Deckhouse registry asks first.
func newRenderPlatformCommand(opts *globalOptions) *cobra.Command {
	var f nodeFlags
	var platformImage, cni string
	cmd := &cobra.Command{
		Use:   "platform",
		Short: "Print the platform controller's objects and where every image comes from",
		Long: `Print what install/platform applies (namespace d8-system, the controller's ServiceAccount,
ClusterRoleBinding, registry Secret, install-data, the ModuleConfigs with the deckhouse one's
releaseChannel held back, and the Deployment), preceded by the image sources: the platform
image, and the node images and packages (dhctl's layout, docs/registry-layout.md). Secret values
are shown as <redacted>.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cluster, err := loadConfig(cmd, opts, true)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			vm, err := f.versionMap(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			in, err := install.New(install.Options{
				Connect: func(context.Context) (*kube.Client, error) {
					return nil, errors.New("config render does not connect to a cluster")
				},
				// The cluster-state objects (which hold the UUID) are not printed.
				ClusterUUID: "00000000-0000-0000-0000-000000000000",
				Cluster:     cluster, VersionMap: vm, CNI: cni, PlatformImage: platformImage, InstallerVersion: buildVersion(),
			})
			if err != nil {
				return usageError(err)
			}
			v := in.Values()
			layout := "dhctl's own controller"
			if v.Platform.DeckhouseLayout {
				layout = "Deckhouse's layout: the repository imagesRepo itself"
			}
			fmt.Fprintf(w, "# platform image: %s (%s)\n", v.Platform.Image, layout)
			fmt.Fprintf(w, "# node images and packages: %s (dhctl's layout, docs/registry-layout.md)\n", v.NodeImagesRepo)
			if rel, ok := vm.Release(cluster.KubernetesVersion); ok {
				for _, ref := range cluster.InitConfiguration.Deckhouse.NodeImageRefs(rel) {
					fmt.Fprintf(w, "#   %s\n", ref)
				}
			}
			fmt.Fprintf(w, "#   %s/packages/<name>, each file the blob of its sha256 in the version map\n", v.NodeImagesRepo)
			if v.Platform.ReleaseChannel != "" {
				fmt.Fprintf(w, "# releaseChannel %s: set by install/release-channel once the platform is ready\n", v.Platform.ReleaseChannel)
			}
			objs, err := in.PlatformObjects()
			if err != nil {
				return err
			}
			kube.SortForApply(objs)
			for _, o := range objs {
				out, err := sigsyaml.Marshal(redactSecret(o).Object)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "---\n%s", out)
			}
			return nil
		},
	}
	f.addVersionMap(cmd)
	cmd.Flags().StringVar(&platformImage, "platform-image", "", "as for bootstrap: the platform controller image, a full reference or \":<tag>\"")
	cmd.Flags().StringVar(&cni, "cni", "", "as for bootstrap: the CNI (default from the ModuleConfigs, else flannel)")
	return cmd
}

// redactSecret is o with a Secret's values replaced by <redacted>.
func redactSecret(o *unstructured.Unstructured) *unstructured.Unstructured {
	if o.GetKind() != "Secret" {
		return o
	}
	c := o.DeepCopy()
	for _, field := range []string{"data", "stringData"} {
		m, _, _ := unstructured.NestedMap(c.Object, field)
		for k := range m {
			m[k] = "<redacted>"
		}
		if m != nil {
			_ = unstructured.SetNestedMap(c.Object, m, field)
		}
	}
	return c
}

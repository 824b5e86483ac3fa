package installerimage

import (
	"context"
	"fmt"
	"os"

	"github.com/dhctl-dev/dhctl/internal/mirror"
)

// Repository is the image's name below a registry path: <imagesRepo>/installer:<version>.
const Repository = "installer"

// WriteBundle builds the image and writes it as a bundle in dir: platform.tar is an OCI image
// layout tarball holding it as installer:<version>, and `dhctl mirror push <dir> <repo>` puts it
// beside the cluster's images.
func WriteBundle(ctx context.Context, dir string, o Options) (*mirror.Manifest, error) {
	work, err := os.MkdirTemp("", "dhctl-installer-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	o.WorkDir = work
	img, err := Build(o)
	if err != nil {
		return nil, err
	}
	if o.Version == "" {
		return nil, fmt.Errorf("installer image: no version to tag it with")
	}
	it := mirror.Item{Kind: mirror.KindImage, Name: Repository, Path: Repository + ":" + mirror.PackageTag(o.Version), Archive: mirror.ArchivePlatform}
	w, err := mirror.NewWriter(dir)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	if _, err := w.AddImage(ctx, it, img); err != nil {
		return nil, err
	}
	return w.Finish(ctx, []mirror.Item{it}, 0)
}

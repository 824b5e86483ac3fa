package artifacts

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dhctl-dev/dhctl/internal/installerimage"
)

// hostCACerts is Debian's CA bundle (package ca-certificates, which scripts/ensure-deps.sh installs).
const hostCACerts = "/etc/ssl/certs/ca-certificates.crt"

// InstallerInputs are the installer image's inputs from this machine's offline builds: the
// OpenTofu build, the vSphere provider mirror, Debian's static busybox and CA bundle, and the
// given dhctl binary (a static linux/amd64 build).
func InstallerInputs(ctx context.Context, opts Options, dhctl, version string) (installerimage.Options, error) {
	if err := opts.defaults(); err != nil {
		return installerimage.Options{}, err
	}
	bins, err := Build(ctx, opts, OpenTofu)
	if err != nil {
		return installerimage.Options{}, err
	}
	plugins, err := ProviderMirror(ctx, opts)
	if err != nil {
		return installerimage.Options{}, err
	}
	debs, err := FetchDebs(ctx, opts, busyboxDeb)
	if err != nil {
		return installerimage.Options{}, err
	}
	dir, err := unpackDebs(ctx, opts, "busybox-"+debsKey([]Deb{busyboxDeb}), debs)
	if err != nil {
		return installerimage.Options{}, err
	}
	if _, err := os.Stat(hostCACerts); err != nil {
		return installerimage.Options{}, fmt.Errorf("artifacts: the CA bundle %s (Debian's ca-certificates): %w", hostCACerts, err)
	}
	return installerimage.Options{Dhctl: dhctl, Engine: bins["tofu"], PluginsDir: plugins, CACerts: hostCACerts,
		Busybox: filepath.Join(dir, "root", "bin", "busybox"), Version: version}, nil
}

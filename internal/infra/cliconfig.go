package infra

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cliConfig is the engine's CLI configuration: providers only from the filesystem mirror (under
// both registry host names, since tofu resolves "hashicorp/x" to registry.opentofu.org and
// terraform to registry.terraform.io), never from a registry, and no update checks.
func cliConfig(mirror string, sources []string) string {
	var include []string
	for _, s := range sources {
		for _, host := range []string{"registry.opentofu.org", "registry.terraform.io"} {
			include = append(include, strconv.Quote(host+"/"+s))
		}
	}
	return fmt.Sprintf(`# Written by dhctl: providers come from the local mirror only.
disable_checkpoint = true
provider_installation {
  filesystem_mirror {
    path    = %s
    include = [%s]
  }
  direct {
    exclude = ["*/*/*"]
  }
}
`, strconv.Quote(mirror), strings.Join(include, ", "))
}

// checkMirror says what is wrong with a provider mirror directory for the given sources
// ("hashicorp/vsphere"), before the engine gives a less direct answer.
func checkMirror(mirror string, sources []string) error {
	if mirror == "" {
		return fmt.Errorf("no provider mirror: give the directory holding the Terraform provider plugins with --terraform-plugins-dir (the installer image has them in /plugins)")
	}
	fi, err := os.Stat(mirror)
	if err != nil || !fi.IsDir() {
		return fmt.Errorf("provider mirror %s is not a directory: give the directory holding <host>/<namespace>/<name>/<version>/<os>_<arch>/ with --terraform-plugins-dir", mirror)
	}
	for _, s := range sources {
		found := false
		for _, host := range []string{"registry.opentofu.org", "registry.terraform.io"} {
			if fi, err := os.Stat(filepath.Join(mirror, host, s)); err == nil && fi.IsDir() {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("provider mirror %s has no %s (want %s/registry.terraform.io/%s/<version>/linux_amd64/ or the same under registry.opentofu.org): copy the provider plugin there",
				mirror, s, mirror, s)
		}
	}
	return nil
}

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

// MirrorProvider is one provider release found in a filesystem mirror.
type MirrorProvider struct {
	Host, Source, Version, Target string
	Packed                        bool // a zip (packed layout), else an unpacked directory
}

func (p MirrorProvider) String() string {
	form := "unpacked"
	if p.Packed {
		form = "packed"
	}
	return fmt.Sprintf("%s/%s %s %s (%s)", p.Host, p.Source, p.Version, p.Target, form)
}

// ListMirror lists the provider releases of a filesystem mirror, in either layout:
// <host>/<namespace>/<type>/<version>/<target>/ or <host>/<namespace>/<type>/terraform-provider-<type>_<version>_<target>.zip.
func ListMirror(dir string) ([]MirrorProvider, error) {
	var out []MirrorProvider
	hosts, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, h := range hosts {
		nss, _ := os.ReadDir(filepath.Join(dir, h.Name()))
		for _, ns := range nss {
			types, _ := os.ReadDir(filepath.Join(dir, h.Name(), ns.Name()))
			for _, typ := range types {
				base := filepath.Join(dir, h.Name(), ns.Name(), typ.Name())
				entries, _ := os.ReadDir(base)
				for _, e := range entries {
					src := ns.Name() + "/" + typ.Name()
					if !e.IsDir() {
						rest, ok := strings.CutPrefix(e.Name(), "terraform-provider-"+typ.Name()+"_")
						rest, zip := strings.CutSuffix(rest, ".zip")
						if ver, target, found := strings.Cut(rest, "_"); ok && zip && found {
							out = append(out, MirrorProvider{Host: h.Name(), Source: src, Version: ver, Target: target, Packed: true})
						}
						continue
					}
					targets, _ := os.ReadDir(filepath.Join(base, e.Name()))
					for _, t := range targets {
						if t.IsDir() {
							out = append(out, MirrorProvider{Host: h.Name(), Source: src, Version: e.Name(), Target: t.Name()})
						}
					}
				}
			}
		}
	}
	return out, nil
}

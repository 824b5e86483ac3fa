package config

import (
	"strings"
	"testing"
)

func TestPlatformImageRef(t *testing.T) {
	rel := KubernetesRelease{Patch: "1.33.13", Images: map[string]Image{PlatformControllerImage: {Tag: "v9.9.9"}}}
	for _, c := range []struct {
		name            string
		init            DeckhouseInit
		override, want  string
		deckhouseLayout bool
	}{
		{name: "dhctl's own, tag from the version map", init: DeckhouseInit{ImagesRepo: "r.example.com/d8/"}, want: "r.example.com/d8/platform-controller:v9.9.9"},
		{name: "dhctl's own beside a Deckhouse registry", init: DeckhouseInit{ImagesRepo: "r.example.com/d8", NodeImagesRepo: "r.example.com/dhctl"}, want: "r.example.com/dhctl/platform-controller:v9.9.9"},
		{name: "devBranch, Deckhouse's field", init: DeckhouseInit{ImagesRepo: "r.example.com/deckhouse/ee", DevBranch: "v1.70.3"}, want: "r.example.com/deckhouse/ee:v1.70.3", deckhouseLayout: true},
		{name: "platformImage tag", init: DeckhouseInit{ImagesRepo: "r.example.com/deckhouse/ee", PlatformImage: ":v1.70.3"}, want: "r.example.com/deckhouse/ee:v1.70.3", deckhouseLayout: true},
		{name: "platformImage full reference of the same repository", init: DeckhouseInit{ImagesRepo: "r.example.com:5000/deckhouse/ee", PlatformImage: "r.example.com:5000/deckhouse/ee:v1.70.3"}, want: "r.example.com:5000/deckhouse/ee:v1.70.3", deckhouseLayout: true},
		{name: "another image", init: DeckhouseInit{ImagesRepo: "r.example.com/d8", PlatformImage: "other.example.com/ctl:v1"}, want: "other.example.com/ctl:v1"},
		{name: "the flag wins", init: DeckhouseInit{ImagesRepo: "r.example.com/d8", PlatformImage: ":v1", DevBranch: "v2"}, override: ":v3", want: "r.example.com/d8:v3", deckhouseLayout: true},
	} {
		got, err := c.init.PlatformImageRef(c.override, rel)
		if err != nil || got != c.want {
			t.Errorf("%s: %q %v, want %q", c.name, got, err, c.want)
			continue
		}
		if l := c.init.DeckhouseLayout(got); l != c.deckhouseLayout {
			t.Errorf("%s: DeckhouseLayout(%q) = %v", c.name, got, l)
		}
	}
	for _, c := range []struct {
		init     DeckhouseInit
		override string
	}{
		{DeckhouseInit{ImagesRepo: "r/d8"}, ":stable"},
		{DeckhouseInit{ImagesRepo: "r/d8", DevBranch: "EarlyAccess"}, ""},
		{DeckhouseInit{ImagesRepo: "r/d8", DevBranch: "early-access"}, ""},
		{DeckhouseInit{ImagesRepo: "r/d8", PlatformImage: "r/d8:rock-solid"}, ""},
	} {
		if got, err := c.init.PlatformImageRef(c.override, rel); err == nil || !strings.Contains(err.Error(), "release channel") {
			t.Errorf("%+v override %q: %q %v, want a release channel refused", c.init, c.override, got, err)
		}
	}
	delete(rel.Images, PlatformControllerImage)
	if _, err := (DeckhouseInit{ImagesRepo: "r"}).PlatformImageRef("", rel); err == nil || !strings.Contains(err.Error(), "no platform-controller image") {
		t.Errorf("no platform image in the version map: %v", err)
	}
}

func TestNodeImagesRepository(t *testing.T) {
	if got := (DeckhouseInit{ImagesRepo: "r.example.com/d8/"}).NodeImagesRepository(); got != "r.example.com/d8" {
		t.Errorf("default: %q", got)
	}
	if got := (DeckhouseInit{ImagesRepo: "r.example.com/d8", NodeImagesRepo: "r.example.com/dhctl/"}).NodeImagesRepository(); got != "r.example.com/dhctl" {
		t.Errorf("set: %q", got)
	}
}

func TestPlatformImageRules(t *testing.T) {
	mc := func(settings string) string {
		return "---\napiVersion: deckhouse.io/v1alpha1\nkind: ModuleConfig\nmetadata:\n  name: deckhouse\nspec:\n  version: 1\n  settings:\n" + settings
	}
	for _, tc := range []struct{ name, extra, want string }{
		{"a version tag", "  devBranch: v1.70.3\n", ""},
		{"platformImage tag", "  platformImage: \":v1.70.3\"\n", ""},
		{"node images beside it", "  nodeImagesRepo: registry.example.com/dhctl\n", ""},
		{"both", "  devBranch: v1.70.3\n  platformImage: \":v1.70.3\"\n", "deckhouse.devBranch: is set together with platformImage"},
		{"a channel as devBranch", "  devBranch: stable\n", `deckhouse.devBranch: names the release channel "stable"`},
		{"a channel in platformImage", "  platformImage: registry.example.com/deckhouse/ce:EarlyAccess\n", `deckhouse.platformImage: names the release channel "EarlyAccess"`},
		{"not a reference", "  platformImage: \"https://r/x\"\n", "deckhouse.platformImage"},
		{"node images elsewhere", "  nodeImagesRepo: other.example.com/dhctl\n", "deckhouse.nodeImagesRepo: is on another registry than imagesRepo"},
		{"deckhouse settings", mc("    bundle: Minimal\n    logLevel: Debug\n    releaseChannel: EarlyAccess\n"), ""},
		{"a bundle typo", mc("    bundle: Minimall\n"), `spec.settings.bundle: "Minimall" is not a bundle`},
		{"a channel typo", mc("    releaseChannel: stable\n"), `spec.settings.releaseChannel: "stable" is not a release channel; did you mean Stable?`},
		{"a log level typo", mc("    logLevel: Warn\n"), `spec.settings.logLevel: "Warn" is not a log level`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := validCC + "---\n" + validInit + tc.extra
			if strings.HasPrefix(tc.extra, "---") {
				doc = validCC + "---\n" + validInit + tc.extra
			}
			cfg := writeFile(t, "config.yml", doc)
			_, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{cfg}})
			if tc.want == "" {
				if ps != nil {
					t.Fatal(ps)
				}
				return
			}
			if len(ps) != 1 || !strings.Contains(ps[0].Error(), tc.want) {
				t.Errorf("got %v, want %q", ps, tc.want)
			}
		})
	}
}

// A worker runs no static pods: it is given the node images without the control plane and etcd.
func TestNodeImageRefsFor(t *testing.T) {
	rel := KubernetesRelease{Images: map[string]Image{
		"kube-apiserver": {Tag: "v1"}, "kube-controller-manager": {Tag: "v1"}, "kube-scheduler": {Tag: "v1"}, "etcd": {Tag: "3"},
		"kube-proxy": {Tag: "v1"}, "pause": {Tag: "3.10"}, "coredns": {Tag: "v1.12.0"}, "flannel": {Tag: "v0"},
		PlatformControllerImage: {Tag: "v9"},
	}}
	d := DeckhouseInit{ImagesRepo: "r/d8", NodeImagesRepo: "r/dhctl"}
	master := strings.Join(d.NodeImageRefsFor(rel, true), " ")
	worker := strings.Join(d.NodeImageRefsFor(rel, false), " ")
	if want := "r/dhctl/coredns:v1.12.0 r/dhctl/etcd:3 r/dhctl/flannel:v0 r/dhctl/kube-apiserver:v1 r/dhctl/kube-controller-manager:v1 r/dhctl/kube-proxy:v1 r/dhctl/kube-scheduler:v1 r/dhctl/pause:3.10"; master != want {
		t.Errorf("control plane:\n got %s\nwant %s", master, want)
	}
	if want := "r/dhctl/coredns:v1.12.0 r/dhctl/flannel:v0 r/dhctl/kube-proxy:v1 r/dhctl/pause:3.10"; worker != want {
		t.Errorf("worker:\n got %s\nwant %s", worker, want)
	}
	if all := strings.Join(d.NodeImageRefs(rel), " "); all != master {
		t.Errorf("NodeImageRefs %s", all)
	}
}

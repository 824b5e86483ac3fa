package config

import (
	"fmt"
	"sort"
	"strings"
)

// Where a cluster's images come from (docs/registry-layout.md). Two layouts share one registry:
//   - dhctl's: every node image and package flat under the node images repository
//     (<nodeImagesRepo>/kube-apiserver:v1.33.13, <nodeImagesRepo>/packages/kubelet:v1.33.13),
//     with dhctl's own platform controller at <nodeImagesRepo>/platform-controller:<tag>;
//   - Deckhouse's: the platform controller is the repository itself, <imagesRepo>:<version>, and
//     its modules' images are digests of that repository. Its paths (install, release-channel,
//     modules, security) never collide with dhctl's names, so `dhctl mirror push` can add the
//     node images to a Deckhouse registry, or they live beside it (nodeImagesRepo).

// PlatformControllerImage is the version map's name of dhctl's own platform controller.
const PlatformControllerImage = "platform-controller"

// releaseChannels are Deckhouse's channel names: tags that move, refused as the platform's tag
// (the controller would update itself mid-bootstrap, and a re-run could install another version).
var releaseChannels = []string{"alpha", "beta", "early-access", "stable", "rock-solid", "latest"}

// channelTag reports whether tag is a release channel's name, as a registry tag (early-access)
// or as the ModuleConfig spells it (EarlyAccess).
func channelTag(tag string) bool {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "-", "")) }
	for _, c := range releaseChannels {
		if norm(tag) == norm(c) {
			return true
		}
	}
	return false
}

// ImagesRepository is imagesRepo without a trailing slash: the platform's registry path.
func (d DeckhouseInit) ImagesRepository() string { return strings.TrimSuffix(d.ImagesRepo, "/") }

// NodeImagesRepository is where the node images and packages are (dhctl's layout): nodeImagesRepo,
// else imagesRepo.
func (d DeckhouseInit) NodeImagesRepository() string {
	if r := strings.TrimSuffix(d.NodeImagesRepo, "/"); r != "" {
		return r
	}
	return d.ImagesRepository()
}

// PlatformImageRef is the platform controller's image reference. override (the --platform-image
// flag) wins over the document's platformImage, which wins over devBranch; each is a full
// reference, or ":<tag>" for <imagesRepo>:<tag>. With none, dhctl's own controller at
// <nodeImagesRepo>/platform-controller:<the version map's tag>. A release channel's name as the
// tag is refused: the tag must pin a version.
func (d DeckhouseInit) PlatformImageRef(override string, rel KubernetesRelease) (string, error) {
	choice, from := override, "--platform-image"
	switch {
	case choice != "":
	case d.PlatformImage != "":
		choice, from = d.PlatformImage, "InitConfiguration deckhouse.platformImage"
	case d.DevBranch != "":
		choice, from = ":"+d.DevBranch, "InitConfiguration deckhouse.devBranch"
	default:
		img, ok := rel.Images[PlatformControllerImage]
		if !ok || img.Tag == "" {
			return "", fmt.Errorf("version map: no %s image for Kubernetes %s", PlatformControllerImage, rel.Patch)
		}
		return d.NodeImagesRepository() + "/" + PlatformControllerImage + ":" + img.Tag, nil
	}
	ref := choice
	if strings.HasPrefix(choice, ":") {
		ref = d.ImagesRepository() + choice
	}
	if tag := imageTag(ref); channelTag(tag) {
		return "", fmt.Errorf("%s %q: %q is a release channel, and its image moves; give the version tag instead, such as :v1.70.3", from, choice, tag)
	}
	return ref, nil
}

// DeckhouseLayout reports whether image is the repository imagesRepo itself (<imagesRepo>:<tag>),
// i.e. the platform is Deckhouse from a Deckhouse registry.
func (d DeckhouseInit) DeckhouseLayout(image string) bool {
	repo, _, _ := strings.Cut(image, "@")
	if tag := imageTag(repo); tag != "" {
		repo = strings.TrimSuffix(repo, ":"+tag)
	}
	return repo == d.ImagesRepository()
}

// imageTag is the tag of an image reference ("" when it has none): the part after the last colon
// of the last path segment, before any digest.
func imageTag(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	last := ref[strings.LastIndex(ref, "/")+1:]
	if i := strings.LastIndex(last, ":"); i >= 0 {
		return last[i+1:]
	}
	return ""
}

// controlPlaneImages run only on control-plane nodes (as static pods).
var controlPlaneImages = map[string]bool{"kube-apiserver": true, "kube-controller-manager": true, "kube-scheduler": true, "etcd": true}

// NodeImageRefs are the references of the images the nodes run (every image of the version map
// but the platform controller, which PlatformImageRef names), sorted.
func (d DeckhouseInit) NodeImageRefs(rel KubernetesRelease) []string {
	return d.NodeImageRefsFor(rel, true)
}

// NodeImageRefsFor are the images a node runs, sorted: on every node the sandbox, kube-proxy,
// the CNI and CoreDNS; on a control-plane node also the control plane and etcd (the platform
// controller, on control-plane nodes too, is PlatformImageRef's).
func (d DeckhouseInit) NodeImageRefsFor(rel KubernetesRelease, controlPlane bool) []string {
	var out []string
	for n, img := range rel.Images {
		if n != PlatformControllerImage && img.Tag != "" && (controlPlane || !controlPlaneImages[n]) {
			out = append(out, d.NodeImagesRepository()+"/"+n+":"+img.Tag)
		}
	}
	sort.Strings(out)
	return out
}

// Package templates holds the Kubernetes manifests dhctl installs (CNI, cluster DNS, platform controller, CRDs),
// embedded into the binary. They are Go text/template files rendered by internal/install; see
// README.md for the layout and the values each set receives.
package templates

import "embed"

// FS is the manifests tree as shipped in the binary.
//
//go:embed README.md cni crds dns platform
var FS embed.FS

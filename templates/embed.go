// Package templates holds the Kubernetes manifests dhctl installs (CNI, platform controller, CRDs),
// embedded into the binary.
package templates

import "embed"

// FS is the manifests tree as shipped in the binary.
//
//go:embed README.md
var FS embed.FS

// Package candi holds the data a node needs, embedded into the binary: OpenAPI schemas of the
// configuration documents, the version map, bashible steps and kubeadm templates.
package candi

import "embed"

// FS is the candi tree as shipped in the binary. Development builds may override it with a
// directory (see the --candi-dir flag), so code must read candi through an fs.FS, never by path.
//
//go:embed openapi cloud-providers version_map.yml bashible
var FS embed.FS

// Package terraform holds the Terraform layouts per provider
// (<provider>/<layout>/{base-infrastructure,master-node,static-node}), embedded into the binary.
package terraform

import "embed"

// FS is the Terraform tree as shipped in the binary.
//
//go:embed README.md vsphere/*/*/*.tf
var FS embed.FS

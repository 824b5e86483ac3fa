# The step's inputs, given by dhctl as one JSON tfvars file (the names Deckhouse's layouts take).

variable "providerClusterConfiguration" {
  description = "The VsphereClusterConfiguration document, defaults applied, as an object."
  type        = any

  validation {
    condition     = try(lower(var.providerClusterConfiguration.layout) == "standard", false)
    error_message = "This is the Standard layout: VsphereClusterConfiguration.layout must be Standard."
  }
  validation {
    condition     = try(length(var.providerClusterConfiguration.zones) > 0, false)
    error_message = "VsphereClusterConfiguration.zones must name at least one zone."
  }
  validation {
    condition = alltrue([
      for g in concat([try(var.providerClusterConfiguration.masterNodeGroup, {})], try(var.providerClusterConfiguration.nodeGroups, [])) :
      try(g.zones, null) == null || length(setintersection(try(var.providerClusterConfiguration.zones, []), try(g.zones, []))) > 0
    ])
    error_message = "The zones of masterNodeGroup and of each of nodeGroups must include at least one of VsphereClusterConfiguration.zones: their nodes are placed in those."
  }
}

variable "clusterConfiguration" {
  description = "The ClusterConfiguration document, as an object."
  type        = any

  validation {
    condition     = try(length(var.clusterConfiguration.cloud.prefix) > 0, false)
    error_message = "ClusterConfiguration.cloud.prefix must be set: the names of the cluster's VMs and resource pools start with it."
  }
}

variable "clusterUUID" {
  description = "The cluster's UUID."
  type        = string
}

variable "zoneComputeResources" {
  description = <<-EOT
    Optional, from dhctl's discovery: for each zone, the inventory path of the compute resource
    (cluster or standalone host) its tag is on, absolute (/DC/host/cluster) or relative to the
    datacenter's host folder. A zone missing here is the compute resource named like the zone.
  EOT
  type        = map(string)
  default     = {}
  nullable    = false
}

variable "datacenter" {
  description = <<-EOT
    Optional, from dhctl's discovery: the inventory path of the datacenter the region's tag is
    on (/DC). Only the Kubernetes data disk needs it, as the provider creates disks by
    datacenter name; without it the disk goes to vCenter's only datacenter.
  EOT
  type        = string
  default     = ""
  nullable    = false
}

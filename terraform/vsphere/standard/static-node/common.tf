# What every step of the layout reads from the two configuration documents, and where the
# cluster is: the datacenter that carries the region tag. This file is the same in every step.
#
# Optional fields are read through try(), so a document dhctl has not applied the schema's
# defaults to gives the same result.

locals {
  pcc    = var.providerClusterConfiguration
  prefix = var.clusterConfiguration.cloud.prefix

  zones = local.pcc.zones

  base_resource_pool       = trim(try(local.pcc.baseResourcePool, ""), "/")
  use_nested_resource_pool = try(local.pcc.useNestedResourcePool, true)
  # The pool the cluster's machines go to in every zone, relative to the zone's root pool
  # (<compute resource>/Resources); "" is the root pool itself.
  cluster_resource_pool = join("/", compact([
    local.base_resource_pool,
    local.use_nested_resource_pool ? local.prefix : "",
  ]))

  # A zone is the compute resource (a cluster, or a standalone host) that carries the zone's
  # tag. The upstream provider cannot turn a tagged object into an inventory path, so the path
  # comes from dhctl's discovery (zoneComputeResources) or, for a zone it does not name, is
  # taken to be the compute resource named like the zone in the datacenter's host folder.
  zone_compute_resource = {
    for z in local.zones : z => trimsuffix(lookup(var.zoneComputeResources, z, z), "/")
  }
}

data "vsphere_tag_category" "region" {
  name = try(local.pcc.regionTagCategory, "k8s-region")
}

data "vsphere_tag" "region" {
  name        = local.pcc.region
  category_id = data.vsphere_tag_category.region.id
}

# Every lookup below is relative to this datacenter.
data "vsphere_dynamic" "datacenter" {
  filter = [data.vsphere_tag.region.id]
  type   = "Datacenter"
}

data "vsphere_tag_category" "zone" {
  name = try(local.pcc.zoneTagCategory, "k8s-zone")
}

# What the cluster's machines share: the VM folder and, in every zone, the cluster's resource
# pool. The zones' tags are looked up here so that a missing tag fails the first step.

resource "vsphere_folder" "main" {
  # An existing folder (vmFolderExists) is neither created nor deleted. The folder's parent
  # must exist: only the last element of vmFolderPath is created.
  count = try(local.pcc.vmFolderExists, false) ? 0 : 1

  path          = local.pcc.vmFolderPath
  type          = "vm"
  datacenter_id = data.vsphere_dynamic.datacenter.id
}

data "vsphere_tag" "zone" {
  for_each = toset(local.zones)

  name        = each.key
  category_id = data.vsphere_tag_category.zone.id
}

# Fails ("no matching resources found") unless the zone's compute resource carries its tag.
data "vsphere_dynamic" "zone" {
  for_each = toset(local.zones)

  filter     = [data.vsphere_tag.zone[each.key].id]
  name_regex = "^${replace(basename(local.zone_compute_resource[each.key]), "/[.^$*+?(){}|\\[\\]\\\\]/", "\\$0")}$"
}

# The parent of the cluster's pool in every zone: baseResourcePool, or the zone's root pool.
data "vsphere_resource_pool" "parent" {
  for_each = local.use_nested_resource_pool ? toset(local.zones) : toset([])

  name          = join("/", compact([local.zone_compute_resource[each.key], "Resources", local.base_resource_pool]))
  datacenter_id = data.vsphere_dynamic.datacenter.id
}

# The cluster's pool in every zone, named after cloud.prefix (useNestedResourcePool, the
# default). Keyed by the parent pool's id, like Deckhouse's layout, so states line up.
resource "vsphere_resource_pool" "resource_pool" {
  for_each = toset([for p in data.vsphere_resource_pool.parent : p.id])

  name                    = local.prefix
  parent_resource_pool_id = each.key

  # Shares, reservations and limits are the vSphere administrator's to tune.
  lifecycle {
    ignore_changes = [
      cpu_share_level,
      cpu_shares,
      cpu_reservation,
      cpu_expandable,
      cpu_limit,
      memory_share_level,
      memory_shares,
      memory_reservation,
      memory_expandable,
      memory_limit,
    ]
  }
}

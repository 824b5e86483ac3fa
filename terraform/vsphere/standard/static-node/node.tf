# What the master-node and static-node steps share: where the machine goes (zone, pool, folder,
# datastore, networks), what it is cloned from, and its first-boot data for cloud-init's VMware
# datasource (guestinfo.metadata, guestinfo.userdata). main.tf of each step sets node_group and
# node_name and holds the machine itself. This file is the same in both steps.

locals {
  instance_class  = local.node_group.instanceClass
  runtime_options = try(local.instance_class.runtimeOptions, {})

  # The node's zone: the group's zones that are also global zones (in sorted order, as
  # Deckhouse picks them), or all global zones, taken in turn by node index.
  group_zones = try(local.node_group.zones, null)
  node_zones  = local.group_zones == null ? local.zones : sort(setintersection(local.zones, local.group_zones))
  zone        = element(local.node_zones, var.nodeIndex)

  # The pool: the instance class's own, or the cluster's pool of the zone.
  resource_pool      = trim(try(local.instance_class.resourcePool, local.cluster_resource_pool), "/")
  resource_pool_path = join("/", compact([local.zone_compute_resource[local.zone], "Resources", local.resource_pool]))

  additional_networks = try(local.instance_class.additionalNetworks, [])

  # The static address of the first interface, if the instance class gives one per node.
  main_addresses = try(local.instance_class.mainNetworkIPAddresses, [])
  main_address   = var.nodeIndex < length(local.main_addresses) ? local.main_addresses[var.nodeIndex] : null
  main_ip        = local.main_address == null ? null : split("/", local.main_address.address)[0]

  # cloud-init network configuration (version 2). vSphere gives the first vmxnet3 interface
  # PCI slot 192 (ens192), the next ones 224, 256, ... (ens224, ens256, ...).
  # (Both branches are JSON text: the two objects have different attributes.)
  main_interface = jsondecode(local.main_address == null ? jsonencode({ dhcp4 = true }) : jsonencode(merge(
    {
      addresses = [local.main_address.address]
      gateway4  = local.main_address.gateway
    },
    length(keys(try(local.main_address.nameservers, {}))) == 0 ? {} : {
      nameservers = local.main_address.nameservers
    },
  )))
  ethernets = merge(
    { ens192 = local.main_interface },
    local.additional_interfaces,
  )
  # Without a static address nor configured further interfaces the template's own network
  # setup (DHCP) is left alone.
  network_config = local.main_address == null && length(local.additional_interfaces) == 0 ? {} : {
    network = { version = 2, ethernets = local.ethernets }
  }

  metadata = merge(
    {
      local-hostname   = local.node_name
      public-keys-data = local.pcc.sshPublicKey
    },
    local.network_config,
  )

  # VMware Tools' time corrections at start, resume and snapshot (disableTimesync, the
  # default); the periodic one is sync_time_with_host.
  disable_timesync = try(local.pcc.disableTimesync, true)
  timesync_config = local.disable_timesync ? {
    "time.synchronize.continue"      = "0"
    "time.synchronize.restore"       = "0"
    "time.synchronize.resume.disk"   = "0"
    "time.synchronize.shrink"        = "0"
    "time.synchronize.tools.startup" = "0"
    "time.synchronize.tools.enable"  = "0"
    "time.synchronize.resume.host"   = "0"
  } : {}

  extra_config = merge(
    local.timesync_config,
    {
      "guestinfo.metadata"          = base64encode(jsonencode(local.metadata))
      "guestinfo.metadata.encoding" = "base64"
    },
    var.cloudConfig == "" ? {} : {
      "guestinfo.userdata"          = var.cloudConfig
      "guestinfo.userdata.encoding" = "base64"
    },
  )

  # With a static address nothing has to be learnt from the guest, so the apply does not wait
  # for VMware Tools to report one (a simulator never does); with DHCP the address the guest
  # reports is the node's, so wait for it.
  guest_net_timeout = local.main_address == null ? 5 : 0

  memory_reservation = try(local.runtime_options.memoryReservation, null) == null ? null : floor(local.instance_class.memory * local.runtime_options.memoryReservation / 100)
}

# The machine's first-boot data (cloud-init runs once), fixed when the machine is made: a later
# cloudConfig or key does not touch a running machine. The VM takes its extra_config from here
# rather than ignoring changes to it, so a VM adopted from an interrupted apply (an import reads
# none of its extra_config, and the apply may have been killed before the VM got it) still gets
# it.
resource "terraform_data" "first_boot" {
  input = local.extra_config

  lifecycle {
    ignore_changes = [input]
  }
}

data "vsphere_tag" "zone" {
  name        = local.zone
  category_id = data.vsphere_tag_category.zone.id
}

# Fails ("no matching resources found") unless the zone's compute resource carries its tag.
data "vsphere_dynamic" "zone" {
  filter     = [data.vsphere_tag.zone.id]
  name_regex = "^${replace(basename(local.zone_compute_resource[local.zone]), "/[.^$*+?(){}|\\[\\]\\\\]/", "\\$0")}$"
}

data "vsphere_resource_pool" "pool" {
  name          = local.resource_pool_path
  datacenter_id = data.vsphere_dynamic.datacenter.id
}

data "vsphere_datastore" "datastore" {
  name          = local.instance_class.datastore
  datacenter_id = data.vsphere_dynamic.datacenter.id
}

data "vsphere_network" "main" {
  name          = local.instance_class.mainNetwork
  datacenter_id = data.vsphere_dynamic.datacenter.id
}

data "vsphere_network" "additional" {
  for_each = toset(local.additional_networks)

  name          = each.key
  datacenter_id = data.vsphere_dynamic.datacenter.id
}

data "vsphere_virtual_machine" "template" {
  name          = local.instance_class.template
  datacenter_id = data.vsphere_dynamic.datacenter.id
}

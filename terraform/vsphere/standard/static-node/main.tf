# One machine of a CloudPermanent node group: <prefix>-<nodeGroupName>-<nodeIndex>, cloned
# from the group's instance class's template.

locals {
  # nodeGroupName must name exactly one of VsphereClusterConfiguration.nodeGroups.
  node_group = one([for g in try(local.pcc.nodeGroups, []) : g if g.name == var.nodeGroupName])
  node_name  = join("-", [local.prefix, var.nodeGroupName, var.nodeIndex])

  # Further interfaces are connected and left to the guest (no internal address is assigned).
  additional_interfaces = {}

  root_disk_size = try(local.instance_class.rootDiskSize, 30)
}

resource "vsphere_virtual_machine" "node" {
  name             = local.node_name
  folder           = local.pcc.vmFolderPath
  resource_pool_id = data.vsphere_resource_pool.pool.id
  datastore_id     = data.vsphere_datastore.datastore.id

  num_cpus  = local.instance_class.numCPUs
  memory    = local.instance_class.memory
  guest_id  = data.vsphere_virtual_machine.template.guest_id
  firmware  = data.vsphere_virtual_machine.template.firmware
  scsi_type = data.vsphere_virtual_machine.template.scsi_type

  network_interface {
    network_id   = data.vsphere_network.main.id
    adapter_type = data.vsphere_virtual_machine.template.network_interface_types[0]
  }
  dynamic "network_interface" {
    for_each = local.additional_networks
    content {
      network_id   = data.vsphere_network.additional[network_interface.value].id
      adapter_type = data.vsphere_virtual_machine.template.network_interface_types[0]
    }
  }

  # The root disk is grown to rootDiskSize, never shrunk below the template's.
  disk {
    label            = "disk0"
    unit_number      = 0
    size             = max(local.root_disk_size, ceil(data.vsphere_virtual_machine.template.disks[0].size))
    thin_provisioned = data.vsphere_virtual_machine.template.disks[0].thin_provisioned
    eagerly_scrub    = false
  }
  # The guest sees disk serial numbers (/dev/disk/by-id), which the CSI driver relies on.
  enable_disk_uuid = true

  nested_hv_enabled  = try(local.runtime_options.nestedHardwareVirtualization, null)
  cpu_share_level    = try(local.runtime_options.cpuShares, null) == null ? null : "custom"
  cpu_share_count    = try(local.runtime_options.cpuShares, null)
  cpu_limit          = try(local.runtime_options.cpuLimit, null)
  cpu_reservation    = try(local.runtime_options.cpuReservation, null)
  memory_share_level = try(local.runtime_options.memoryShares, null) == null ? null : "custom"
  memory_share_count = try(local.runtime_options.memoryShares, null)
  memory_limit       = try(local.runtime_options.memoryLimit, null)
  memory_reservation = local.memory_reservation

  sync_time_with_host = !local.disable_timesync
  extra_config        = terraform_data.first_boot.output

  clone {
    template_uuid = data.vsphere_virtual_machine.template.id
  }

  cdrom {
    client_device = true
  }

  wait_for_guest_net_timeout  = local.guest_net_timeout
  wait_for_guest_ip_timeout   = 0
  wait_for_guest_net_routable = false

  lifecycle {
    # extra_config is first-boot data, fixed when the machine is made (terraform_data
    # first_boot). vSphere reports no swap placement for some VMs (and vcsim never does), which
    # would otherwise show as a change in every plan. vApp properties are the template's.
    ignore_changes = [swap_placement_policy, vapp]

    precondition {
      condition     = length(local.main_addresses) == 0 || var.nodeIndex < length(local.main_addresses)
      error_message = "nodeGroups ${var.nodeGroupName}: instanceClass.mainNetworkIPAddresses has no address for node ${var.nodeIndex} (it lists ${length(local.main_addresses)}): give one per node."
    }
  }
}

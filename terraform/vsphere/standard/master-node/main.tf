# One control-plane machine: <prefix>-master-<nodeIndex>, cloned from the master instance
# class's template, with a second disk for the Kubernetes data (etcd), /dev/sdb in the guest.

locals {
  node_group = local.pcc.masterNodeGroup
  node_name  = join("-", [local.prefix, "master", var.nodeIndex])

  # With additionalNetworks and internalNetworkCIDR, the first further interface gets master
  # N's internal address, the (N+10)th of internalNetworkCIDR, and it is the node's address.
  internal_cidr = try(local.pcc.internalNetworkCIDR, null)
  internal_ip   = length(local.additional_networks) > 0 && local.internal_cidr != null ? cidrhost(local.internal_cidr, var.nodeIndex + 10) : null
  additional_interfaces = local.internal_ip == null ? {} : {
    ens224 = { addresses = ["${local.internal_ip}/${split("/", local.internal_cidr)[1]}"] }
  }

  root_disk_size            = try(local.instance_class.rootDiskSize, 50)
  kubernetes_data_disk_size = 10
}

# etcd's data, a disk of its own: when the machine is replaced (a new template, say) the new one
# gets the same disk, so a cluster with one master keeps its etcd. Thick and zeroed up front,
# so writes do not wait for allocation. The path is the one Deckhouse's layout uses.
resource "vsphere_virtual_disk" "kubernetes_data" {
  size               = local.kubernetes_data_disk_size
  type               = "eagerZeroedThick"
  datastore          = local.instance_class.datastore
  datacenter         = var.datacenter == "" ? null : var.datacenter
  vmdk_path          = "deckhouse/${var.clusterUUID}-kubernetes-data-${var.nodeIndex}.vmdk"
  create_directories = true

  lifecycle {
    # A change of any of these replaces the disk, which deletes etcd's data. They are fixed at
    # creation, yet may read back otherwise: grown by hand, vcsim reports no capacity and
    # every disk as thin, and an import (dhctl adopting the disk of an apply killed before it
    # saved the state) sets the datacenter's name and no create_directories.
    ignore_changes = [size, type, datacenter, create_directories]
  }
}

resource "vsphere_virtual_machine" "master" {
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
  # The Kubernetes data disk, attached: it outlives the machine (see kubernetes_data).
  disk {
    label        = "disk1"
    unit_number  = 1
    attach       = true
    path         = vsphere_virtual_disk.kubernetes_data.vmdk_path
    datastore_id = data.vsphere_datastore.datastore.id
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
      error_message = "masterNodeGroup.instanceClass.mainNetworkIPAddresses has no address for master ${var.nodeIndex} (it lists ${length(local.main_addresses)}): give one per master."
    }
  }
}

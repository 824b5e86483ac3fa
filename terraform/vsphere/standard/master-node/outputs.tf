# What dhctl reads after the step (Deckhouse's names). With a static address the addresses come
# from the configuration; with DHCP from what VMware Tools reports.

output "master_ip_address_for_ssh" {
  value = local.main_ip != null ? local.main_ip : vsphere_virtual_machine.master.default_ip_address
}

output "node_internal_ip_address" {
  value = local.internal_ip != null ? local.internal_ip : (local.main_ip != null ? local.main_ip : vsphere_virtual_machine.master.default_ip_address)
}

output "kubernetes_data_device_path" {
  value = "/dev/sdb"
}

# What dhctl reads after the step (Deckhouse's name). With a static address it comes from the
# configuration; with DHCP from what VMware Tools reports.

output "node_internal_ip_address" {
  value = local.main_ip != null ? local.main_ip : vsphere_virtual_machine.node.default_ip_address
}

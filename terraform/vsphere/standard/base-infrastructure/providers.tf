# The vCenter connection, from VsphereClusterConfiguration.provider. The provider has no CA
# setting: provider.caBundle is for dhctl's own API calls, the engine trusts the machine's CAs.
provider "vsphere" {
  vsphere_server       = var.providerClusterConfiguration.provider.server
  user                 = var.providerClusterConfiguration.provider.username
  password             = var.providerClusterConfiguration.provider.password
  allow_unverified_ssl = try(var.providerClusterConfiguration.provider.insecure, false)
}

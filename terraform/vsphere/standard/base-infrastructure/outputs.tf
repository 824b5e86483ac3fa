# Deckhouse's VsphereCloudDiscoveryData: stored with the cluster's configuration and read by the
# cluster's vSphere controllers. Nothing secret goes in here.
#   vmFolderPath      the VM folder of the cluster's machines, relative to the datacenter's VM folder
#   resourcePoolPath  the pool the machines go to, relative to each zone's root pool
#                     (<compute resource>/Resources); "" is the root pool
#   zones             the zones of the configuration
output "cloud_discovery_data" {
  value = {
    apiVersion       = "deckhouse.io/v1"
    kind             = "VsphereCloudDiscoveryData"
    vmFolderPath     = local.pcc.vmFolderPath
    resourcePoolPath = local.cluster_resource_pool
    zones            = local.zones
  }
}

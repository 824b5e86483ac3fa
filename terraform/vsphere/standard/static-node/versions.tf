# The one required_providers block of this root module (a second one in the same module is an
# error). Only arguments that hashicorp/vsphere v1.26.0 and v2.x both accept are used, so the
# layout runs with the provider dhctl's tests build and with the 2.x releases users install.
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    vsphere = {
      source  = "hashicorp/vsphere"
      version = ">= 1.26.0"
    }
  }
}

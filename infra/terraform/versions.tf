# Terraform and provider versions. The provider lock file (.terraform.lock.hcl) is written by
# `terraform init` on the first `make deploy`; commit it to pin the exact provider build.
terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
  }
}

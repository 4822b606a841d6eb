terraform {
  required_version = ">= 1.6.0"

  required_providers {
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 2.35"
    }
  }

  # State lives in a Kubernetes secret of the cluster Forge is deployed to; one workspace per environment
  # (`terraform workspace select staging`). The rest of the backend (config_path, namespace) comes from
  # -backend-config at `terraform init`, so no cluster detail is committed here.
  backend "kubernetes" {
    secret_suffix = "forge"
  }
}

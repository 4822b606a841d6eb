# One Redis (the live state every API process shares: spend counters, reservations, the halt bus, BullMQ).
# Append-only file on a persistent volume: a restart keeps reservations; if it is lost anyway the guard
# re-seeds the counters from the ClickHouse log (guard/ledger counterSeed). Eviction is off: Forge's keys
# must never be evicted. The plan for more than one Redis is in docs/scale.md.

locals {
  manifest_vars = {
    namespace     = var.namespace
    name          = var.name
    image         = var.image
    memory        = var.memory
    storage_size  = var.storage_size
    storage_class = var.storage_class
    secret_name   = var.secret_name
  }
}

resource "kubernetes_manifest" "statefulset" {
  manifest = yamldecode(templatefile("${path.module}/manifests/statefulset.yaml", local.manifest_vars))
}

resource "kubernetes_manifest" "service" {
  manifest = yamldecode(templatefile("${path.module}/manifests/service.yaml", local.manifest_vars))
}

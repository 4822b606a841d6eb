# The Forge API (`forge start` on the ClickHouse cluster and Redis: every replica shares the live state, so
# any replica may answer any request) and the runners (`forge runner`, BullMQ workers on the same Redis).

locals {
  manifest_vars = {
    namespace               = var.namespace
    image                   = var.image
    api_min_replicas        = var.api_min_replicas
    api_max_replicas        = var.api_max_replicas
    api_target_cpu_percent  = var.api_target_cpu_percent
    api_cpu                 = var.api_cpu
    api_memory              = var.api_memory
    runner_min_replicas     = var.runner_min_replicas
    runner_max_replicas     = var.runner_max_replicas
    runner_jobs_per_replica = var.runner_jobs_per_replica
    runner_concurrency      = var.runner_concurrency
    runner_queue            = var.runner_queue
    redis_host              = var.redis_host
    redis_port              = var.redis_port
    redis_prefix            = var.redis_prefix
    clickhouse_url          = var.clickhouse_url
    clickhouse_cluster      = var.clickhouse_cluster
    clickhouse_database     = var.clickhouse_database
    secret_name             = var.secret_name
    log_level               = var.log_level
    # A change of the configuration files rolls the pods (the files are read once, at start).
    config_checksum = sha256(jsonencode(var.config_files))
  }
}

resource "kubernetes_config_map_v1" "config" {
  metadata {
    name      = "forge-config"
    namespace = var.namespace
  }
  data = var.config_files
}

resource "kubernetes_manifest" "api_deployment" {
  manifest   = yamldecode(templatefile("${path.module}/manifests/api-deployment.yaml", local.manifest_vars))
  depends_on = [kubernetes_config_map_v1.config]

  # The autoscaler owns the replica count after the first apply.
  computed_fields = ["spec.replicas"]
}

resource "kubernetes_manifest" "api_service" {
  manifest = yamldecode(templatefile("${path.module}/manifests/api-service.yaml", local.manifest_vars))
}

resource "kubernetes_manifest" "api_hpa" {
  manifest = yamldecode(templatefile("${path.module}/manifests/api-hpa.yaml", local.manifest_vars))
}

resource "kubernetes_manifest" "api_pdb" {
  manifest = yamldecode(templatefile("${path.module}/manifests/api-pdb.yaml", local.manifest_vars))
}

resource "kubernetes_manifest" "runner_deployment" {
  manifest   = yamldecode(templatefile("${path.module}/manifests/runner-deployment.yaml", local.manifest_vars))
  depends_on = [kubernetes_config_map_v1.config]

  computed_fields = ["spec.replicas"]
}

# KEDA (a CRD: install KEDA in the cluster first) scales the runners on the BullMQ wait list's length.
resource "kubernetes_manifest" "runner_scaledobject" {
  count = var.runner_autoscaling ? 1 : 0

  manifest = yamldecode(templatefile("${path.module}/manifests/runner-scaledobject.yaml", local.manifest_vars))
}

resource "kubernetes_manifest" "runner_triggerauth" {
  count = var.runner_autoscaling ? 1 : 0

  manifest = yamldecode(templatefile("${path.module}/manifests/runner-triggerauth.yaml", local.manifest_vars))
}

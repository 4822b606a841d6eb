# Forge on Kubernetes: the API (replicas behind a service, autoscaled on CPU), runners (BullMQ workers,
# scaled on queue depth), Redis (live state), a ClickHouse cluster (ReplicatedMergeTree + Distributed,
# ClickHouse Keeper), Prometheus + Alertmanager with Forge's rules, Grafana with the generated dashboards.
#
# Secrets never pass through terraform (nor its state): they are keys of one Kubernetes secret,
# var.secret_name, created before `terraform apply` (README, "Deploy"). Every workload reads them from it.

resource "kubernetes_namespace_v1" "forge" {
  metadata {
    name = var.namespace
    labels = {
      "app.kubernetes.io/part-of" = "forge"
    }
  }
}

module "redis" {
  source     = "./modules/redis"
  depends_on = [kubernetes_namespace_v1.forge]

  namespace     = var.namespace
  name          = "forge-redis"
  image         = var.redis_image
  memory        = var.redis_memory
  storage_size  = var.redis_storage_size
  storage_class = var.storage_class
  secret_name   = var.secret_name
}

module "clickhouse" {
  source     = "./modules/clickhouse"
  depends_on = [kubernetes_namespace_v1.forge]

  namespace        = var.namespace
  name             = "forge-clickhouse"
  cluster_name     = var.clickhouse_cluster
  image            = var.clickhouse_image
  keeper_image     = var.clickhouse_keeper_image
  shards           = var.clickhouse_shards
  replicas         = var.clickhouse_replicas
  keeper_replicas  = var.clickhouse_keeper_replicas
  cpu              = var.clickhouse_cpu
  memory           = var.clickhouse_memory
  storage_size     = var.clickhouse_storage_size
  storage_class    = var.storage_class
  secret_name      = var.secret_name
}

module "forge" {
  source     = "./modules/forge"
  depends_on = [kubernetes_namespace_v1.forge]

  namespace = var.namespace
  image     = "${var.image}:${var.image_tag}"

  api_min_replicas       = var.api_min_replicas
  api_max_replicas       = var.api_max_replicas
  api_target_cpu_percent = var.api_target_cpu_percent
  api_cpu                = var.api_cpu
  api_memory             = var.api_memory

  runner_min_replicas     = var.runner_min_replicas
  runner_max_replicas     = var.runner_max_replicas
  runner_jobs_per_replica = var.runner_jobs_per_replica
  runner_concurrency      = var.runner_concurrency
  runner_queue            = var.runner_queue
  runner_autoscaling      = var.runner_autoscaling

  redis_host           = module.redis.host
  redis_port           = module.redis.port
  redis_prefix         = var.redis_prefix
  clickhouse_url       = module.clickhouse.http_url
  clickhouse_cluster   = module.clickhouse.cluster_name
  clickhouse_database  = var.clickhouse_database
  secret_name          = var.secret_name
  config_files = {
    "pilot-budgets.yaml" = file(coalesce(var.budgets_file, "${path.module}/../config/pilot-budgets.yaml"))
    "pricing.yaml"       = file(coalesce(var.pricing_file, "${path.module}/../config/pricing.yaml"))
    "plans.yaml"         = file(coalesce(var.plans_file, "${path.module}/../config/plans.yaml"))
    "alerts.yaml"        = file(coalesce(var.alerts_file, "${path.module}/../config/alerts.yaml"))
  }
  log_level = var.log_level
}

module "monitoring" {
  source     = "./modules/monitoring"
  depends_on = [kubernetes_namespace_v1.forge]

  namespace            = var.namespace
  prometheus_image     = var.prometheus_image
  alertmanager_image   = var.alertmanager_image
  grafana_image        = var.grafana_image
  prometheus_retention = var.prometheus_retention
  storage_class        = var.storage_class
  secret_name          = var.secret_name
  scrape_service       = module.forge.api_service
  clickhouse_host      = module.clickhouse.host
  clickhouse_database  = var.clickhouse_database
  rules_file           = "${path.module}/../alerts/prometheus/forge-alerts.rules.yml"
  alertmanager_file    = "${path.module}/../alerts/prometheus/alertmanager.yml"
  dashboards_dir       = "${path.module}/../grafana/dashboards"
  datasources_file     = "${path.module}/../grafana/provisioning/datasources/forge.yaml"
  dashboards_provider  = "${path.module}/../grafana/provisioning/dashboards/forge.yaml"
}

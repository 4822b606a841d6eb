output "namespace" {
  description = "Namespace Forge runs in."
  value       = kubernetes_namespace_v1.forge.metadata[0].name
}

output "api_url" {
  description = "In-cluster URL of the Forge API service (runners, Prometheus, an ingress in front of it)."
  value       = module.forge.api_url
}

output "redis_url" {
  description = "In-cluster Redis address, without the password (FORGE_REDIS_URL adds it from the secret)."
  value       = module.redis.url
}

output "clickhouse_url" {
  description = "In-cluster ClickHouse HTTP URL (FORGE_CLICKHOUSE_URL)."
  value       = module.clickhouse.http_url
}

output "clickhouse_cluster" {
  description = "ClickHouse cluster name Forge's DDL runs ON CLUSTER."
  value       = module.clickhouse.cluster_name
}

output "prometheus_url" {
  description = "In-cluster Prometheus URL."
  value       = module.monitoring.prometheus_url
}

output "alertmanager_url" {
  description = "In-cluster Alertmanager URL."
  value       = module.monitoring.alertmanager_url
}

output "grafana_url" {
  description = "In-cluster Grafana URL (kubectl port-forward svc/forge-grafana 3000)."
  value       = module.monitoring.grafana_url
}

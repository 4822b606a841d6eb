output "host" {
  description = "In-cluster DNS name of the ClickHouse HTTP service."
  value       = "${var.name}.${var.namespace}.svc.cluster.local"
}

output "http_url" {
  description = "ClickHouse HTTP URL for Forge (FORGE_CLICKHOUSE_URL)."
  value       = "http://${var.name}.${var.namespace}.svc.cluster.local:8123"
}

output "cluster_name" {
  description = "The cluster name in remote_servers."
  value       = var.cluster_name
}

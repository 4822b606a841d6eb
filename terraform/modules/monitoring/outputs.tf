output "prometheus_url" {
  description = "In-cluster Prometheus URL."
  value       = "http://forge-prometheus.${var.namespace}.svc.cluster.local:9090"
}

output "alertmanager_url" {
  description = "In-cluster Alertmanager URL."
  value       = "http://forge-alertmanager.${var.namespace}.svc.cluster.local:9093"
}

output "grafana_url" {
  description = "In-cluster Grafana URL."
  value       = "http://forge-grafana.${var.namespace}.svc.cluster.local:3000"
}

output "api_service" {
  description = "Name of the API service (Prometheus discovers its endpoints)."
  value       = "forge-api"
}

output "api_url" {
  description = "In-cluster URL of the API service."
  value       = "http://forge-api.${var.namespace}.svc.cluster.local:8080"
}

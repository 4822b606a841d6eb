output "host" {
  description = "In-cluster DNS name of the Redis service."
  value       = "${var.name}.${var.namespace}.svc.cluster.local"
}

output "port" {
  description = "Redis port."
  value       = 6379
}

output "url" {
  description = "Redis URL without the password."
  value       = "redis://${var.name}.${var.namespace}.svc.cluster.local:6379"
}

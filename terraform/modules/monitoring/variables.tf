variable "namespace" {
  description = "Namespace of Prometheus, Alertmanager and Grafana."
  type        = string
}

variable "prometheus_image" {
  description = "Prometheus image."
  type        = string
}

variable "alertmanager_image" {
  description = "Alertmanager image."
  type        = string
}

variable "grafana_image" {
  description = "Grafana image."
  type        = string
}

variable "prometheus_retention" {
  description = "Prometheus retention."
  type        = string
}

variable "storage_class" {
  description = "StorageClass of the Prometheus volume (empty: the cluster default)."
  type        = string
}

variable "secret_name" {
  description = "Secret holding metrics-api-key, grafana-admin-password, clickhouse-password, slack-webhook-url, pagerduty-routing-key."
  type        = string
}

variable "scrape_service" {
  description = "Service whose endpoints (every API pod) Prometheus scrapes."
  type        = string
}

variable "clickhouse_host" {
  description = "ClickHouse HTTP service host (Grafana's ClickHouse data source)."
  type        = string
}

variable "clickhouse_database" {
  description = "Database of Forge's tables."
  type        = string
}

variable "rules_file" {
  description = "Forge's Prometheus alerting rules (alerts/prometheus/forge-alerts.rules.yml)."
  type        = string
}

variable "alertmanager_file" {
  description = "Alertmanager configuration (alerts/prometheus/alertmanager.yml)."
  type        = string
}

variable "dashboards_dir" {
  description = "Generated Grafana dashboards (grafana/dashboards, npm run dashboards:build)."
  type        = string
}

variable "datasources_file" {
  description = "Grafana data source provisioning (grafana/provisioning/datasources/forge.yaml)."
  type        = string
}

variable "dashboards_provider" {
  description = "Grafana dashboard provider provisioning (grafana/provisioning/dashboards/forge.yaml)."
  type        = string
}

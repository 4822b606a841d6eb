# Prometheus (scrapes every API pod through the service's endpoints, evaluates Forge's rules, sends to
# Alertmanager), Alertmanager (Forge's routing: Slack, PagerDuty; secrets as files from the Forge secret),
# Grafana (Forge's ClickHouse and Prometheus data sources and the generated dashboards, provisioned).

locals {
  prometheus_config = {
    global = { scrape_interval = "15s", evaluation_interval = "15s" }
    rule_files = ["/etc/prometheus/rules/forge-alerts.rules.yml"]
    alerting = {
      alertmanagers = [{ static_configs = [{ targets = ["forge-alertmanager.${var.namespace}.svc.cluster.local:9093"] }] }]
    }
    scrape_configs = [{
      job_name     = "forge"
      metrics_path = "/metrics"
      # /metrics needs a key bound to all tenants with a read-only role (README, FORGE_METRICS_PUBLIC).
      authorization = { type = "Bearer", credentials_file = "/etc/prometheus/secrets/metrics-api-key" }
      kubernetes_sd_configs = [{ role = "endpoints", namespaces = { names = [var.namespace] } }]
      relabel_configs = [
        { source_labels = ["__meta_kubernetes_service_name"], regex = var.scrape_service, action = "keep" },
        { source_labels = ["__meta_kubernetes_endpoint_port_name"], regex = "http", action = "keep" },
        { source_labels = ["__meta_kubernetes_pod_name"], target_label = "pod" },
      ]
    }]
  }

  manifest_vars = {
    namespace            = var.namespace
    prometheus_image     = var.prometheus_image
    alertmanager_image   = var.alertmanager_image
    grafana_image        = var.grafana_image
    prometheus_retention = var.prometheus_retention
    storage_class        = var.storage_class
    secret_name          = var.secret_name
    clickhouse_host      = var.clickhouse_host
    clickhouse_database  = var.clickhouse_database
  }
}

resource "kubernetes_config_map_v1" "prometheus" {
  metadata {
    name      = "forge-prometheus"
    namespace = var.namespace
  }
  data = {
    "prometheus.yml"          = yamlencode(local.prometheus_config)
    "forge-alerts.rules.yml"  = file(var.rules_file)
  }
}

resource "kubernetes_config_map_v1" "alertmanager" {
  metadata {
    name      = "forge-alertmanager"
    namespace = var.namespace
  }
  data = {
    "alertmanager.yml" = file(var.alertmanager_file)
  }
}

resource "kubernetes_config_map_v1" "grafana_provisioning" {
  metadata {
    name      = "forge-grafana-provisioning"
    namespace = var.namespace
  }
  data = {
    "datasources.yaml" = file(var.datasources_file)
    "dashboards.yaml"  = file(var.dashboards_provider)
  }
}

resource "kubernetes_config_map_v1" "grafana_dashboards" {
  metadata {
    name      = "forge-grafana-dashboards"
    namespace = var.namespace
  }
  data = { for f in fileset(var.dashboards_dir, "*.json") : f => file("${var.dashboards_dir}/${f}") }
}

resource "kubernetes_manifest" "prometheus_service_account" {
  manifest = yamldecode(templatefile("${path.module}/manifests/prometheus-serviceaccount.yaml", local.manifest_vars))
}

resource "kubernetes_manifest" "prometheus_role" {
  manifest = yamldecode(templatefile("${path.module}/manifests/prometheus-role.yaml", local.manifest_vars))
}

resource "kubernetes_manifest" "prometheus_role_binding" {
  manifest = yamldecode(templatefile("${path.module}/manifests/prometheus-rolebinding.yaml", local.manifest_vars))
}

resource "kubernetes_manifest" "prometheus_statefulset" {
  manifest   = yamldecode(templatefile("${path.module}/manifests/prometheus-statefulset.yaml", local.manifest_vars))
  depends_on = [kubernetes_config_map_v1.prometheus]
}

resource "kubernetes_manifest" "prometheus_service" {
  manifest = yamldecode(templatefile("${path.module}/manifests/prometheus-service.yaml", local.manifest_vars))
}

resource "kubernetes_manifest" "alertmanager_deployment" {
  manifest   = yamldecode(templatefile("${path.module}/manifests/alertmanager-deployment.yaml", local.manifest_vars))
  depends_on = [kubernetes_config_map_v1.alertmanager]
}

resource "kubernetes_manifest" "alertmanager_service" {
  manifest = yamldecode(templatefile("${path.module}/manifests/alertmanager-service.yaml", local.manifest_vars))
}

resource "kubernetes_manifest" "grafana_deployment" {
  manifest   = yamldecode(templatefile("${path.module}/manifests/grafana-deployment.yaml", local.manifest_vars))
  depends_on = [kubernetes_config_map_v1.grafana_provisioning, kubernetes_config_map_v1.grafana_dashboards]
}

resource "kubernetes_manifest" "grafana_service" {
  manifest = yamldecode(templatefile("${path.module}/manifests/grafana-service.yaml", local.manifest_vars))
}

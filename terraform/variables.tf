# Every variable is documented in README.md ("Deploy"); test/terraform.test.ts checks that it is.

variable "kubeconfig_path" {
  description = "Path of the kubeconfig terraform uses to reach the cluster."
  type        = string
  default     = "~/.kube/config"
}

variable "kube_context" {
  description = "kubeconfig context of the target cluster (null: the current context)."
  type        = string
  default     = null
}

variable "namespace" {
  description = "Namespace every Forge resource is created in (one per environment)."
  type        = string
  default     = "forge"
}

variable "secret_name" {
  description = "Kubernetes secret (in var.namespace, created before apply) holding every secret: clickhouse-password, redis-password, keys.json, runner-api-key, metrics-api-key, grafana-admin-password, slack-webhook-url, pagerduty-routing-key, and optionally vault-master-key, stripe-secret-key, stripe-webhook-secret."
  type        = string
  default     = "forge-secrets"
}

variable "image" {
  description = "Forge image repository (built from the Dockerfile by the release workflow)."
  type        = string
  default     = "ghcr.io/forge-cost/forge"
}

variable "image_tag" {
  description = "Forge image tag to deploy (the release workflow passes the commit SHA)."
  type        = string
  default     = "latest"
}

variable "api_min_replicas" {
  description = "Fewest API replicas (the autoscaler never goes below; at least 2 for availability)."
  type        = number
  default     = 2

  validation {
    condition     = var.api_min_replicas >= 2
    error_message = "api_min_replicas must be at least 2: one API process is a single point of failure."
  }
}

variable "api_max_replicas" {
  description = "Most API replicas the autoscaler may run."
  type        = number
  default     = 8
}

variable "api_target_cpu_percent" {
  description = "Average CPU utilisation (of the request) the API autoscaler aims for."
  type        = number
  default     = 60
}

variable "api_cpu" {
  description = "CPU request of one API replica (Kubernetes quantity; no CPU limit, so a replica may burst)."
  type        = string
  default     = "1"
}

variable "api_memory" {
  description = "Memory request and limit of one API replica."
  type        = string
  default     = "1Gi"
}

variable "runner_min_replicas" {
  description = "Fewest runner replicas (0 lets the queue autoscaler scale runners to zero when the queue is empty)."
  type        = number
  default     = 1
}

variable "runner_max_replicas" {
  description = "Most runner replicas the queue autoscaler may run."
  type        = number
  default     = 20
}

variable "runner_jobs_per_replica" {
  description = "Waiting BullMQ jobs per runner replica the queue autoscaler aims for."
  type        = number
  default     = 10
}

variable "runner_concurrency" {
  description = "Tasks one runner replica runs at once (FORGE_RUNNER_CONCURRENCY)."
  type        = number
  default     = 2
}

variable "runner_queue" {
  description = "BullMQ queue the runners take tasks from (FORGE_RUNNER_QUEUE)."
  type        = string
  default     = "forge-tasks"
}

variable "runner_autoscaling" {
  description = "true: a KEDA ScaledObject scales runners on the queue's waiting jobs (KEDA must be installed in the cluster); false: runner_min_replicas fixed replicas."
  type        = bool
  default     = true
}

variable "redis_image" {
  description = "Redis image."
  type        = string
  default     = "redis:7.4-alpine"
}

variable "redis_memory" {
  description = "Memory request and limit of Redis (live counters and reservations are small: see docs/scale.md)."
  type        = string
  default     = "2Gi"
}

variable "redis_storage_size" {
  description = "Persistent volume of Redis (append-only file)."
  type        = string
  default     = "10Gi"
}

variable "redis_prefix" {
  description = "Prefix of every Forge key and channel in Redis (FORGE_REDIS_PREFIX)."
  type        = string
  default     = "forge:"
}

variable "clickhouse_image" {
  description = "ClickHouse server image."
  type        = string
  default     = "clickhouse/clickhouse-server:25.3"
}

variable "clickhouse_keeper_image" {
  description = "ClickHouse Keeper image."
  type        = string
  default     = "clickhouse/clickhouse-keeper:25.3"
}

variable "clickhouse_cluster" {
  description = "ClickHouse cluster name (remote_servers; Forge's FORGE_CLICKHOUSE_CLUSTER: DDL ON CLUSTER, ReplicatedMergeTree + Distributed)."
  type        = string
  default     = "forge"
}

variable "clickhouse_database" {
  description = "Database of Forge's tables (FORGE_CLICKHOUSE_DATABASE)."
  type        = string
  default     = "forge"
}

variable "clickhouse_shards" {
  description = "ClickHouse shards (a tenant's events live on one shard: cityHash64(tenant_id))."
  type        = number
  default     = 2
}

variable "clickhouse_replicas" {
  description = "Replicas of each shard."
  type        = number
  default     = 2
}

variable "clickhouse_keeper_replicas" {
  description = "ClickHouse Keeper nodes (odd: 3 tolerates one failure)."
  type        = number
  default     = 3
}

variable "clickhouse_cpu" {
  description = "CPU request of one ClickHouse node."
  type        = string
  default     = "2"
}

variable "clickhouse_memory" {
  description = "Memory request and limit of one ClickHouse node."
  type        = string
  default     = "8Gi"
}

variable "clickhouse_storage_size" {
  description = "Persistent volume of one ClickHouse node."
  type        = string
  default     = "200Gi"
}

variable "storage_class" {
  description = "StorageClass of the persistent volumes (empty: the cluster's default)."
  type        = string
  default     = ""
}

variable "prometheus_image" {
  description = "Prometheus image."
  type        = string
  default     = "prom/prometheus:v3.2.1"
}

variable "alertmanager_image" {
  description = "Alertmanager image."
  type        = string
  default     = "prom/alertmanager:v0.28.1"
}

variable "grafana_image" {
  description = "Grafana image (the ClickHouse data source plugin is installed at start)."
  type        = string
  default     = "grafana/grafana:11.5.2"
}

variable "prometheus_retention" {
  description = "How long Prometheus keeps samples."
  type        = string
  default     = "30d"
}

variable "budgets_file" {
  description = "Budget bands file mounted into Forge (null: config/pilot-budgets.yaml of this repository)."
  type        = string
  default     = null
}

variable "pricing_file" {
  description = "Pricing file mounted into Forge (null: config/pricing.yaml)."
  type        = string
  default     = null
}

variable "plans_file" {
  description = "Billing plans file mounted into Forge (null: config/plans.yaml)."
  type        = string
  default     = null
}

variable "alerts_file" {
  description = "Alert routing file mounted into Forge (null: config/alerts.yaml)."
  type        = string
  default     = null
}

variable "log_level" {
  description = "FORGE_LOG_LEVEL of the API and runners."
  type        = string
  default     = "info"
}

variable "namespace" {
  description = "Namespace of the Forge workloads."
  type        = string
}

variable "image" {
  description = "Forge image with tag."
  type        = string
}

variable "api_min_replicas" {
  description = "Fewest API replicas."
  type        = number
}

variable "api_max_replicas" {
  description = "Most API replicas."
  type        = number
}

variable "api_target_cpu_percent" {
  description = "CPU utilisation the API autoscaler aims for."
  type        = number
}

variable "api_cpu" {
  description = "CPU request of one API replica."
  type        = string
}

variable "api_memory" {
  description = "Memory request and limit of one API replica."
  type        = string
}

variable "runner_min_replicas" {
  description = "Fewest runner replicas."
  type        = number
}

variable "runner_max_replicas" {
  description = "Most runner replicas."
  type        = number
}

variable "runner_jobs_per_replica" {
  description = "Waiting jobs per runner replica the autoscaler aims for."
  type        = number
}

variable "runner_concurrency" {
  description = "Tasks per runner replica at once."
  type        = number
}

variable "runner_queue" {
  description = "BullMQ queue name."
  type        = string
}

variable "runner_autoscaling" {
  description = "Scale runners on queue depth with KEDA."
  type        = bool
}

variable "redis_host" {
  description = "Redis service host."
  type        = string
}

variable "redis_port" {
  description = "Redis port."
  type        = number
}

variable "redis_prefix" {
  description = "FORGE_REDIS_PREFIX."
  type        = string
}

variable "clickhouse_url" {
  description = "ClickHouse HTTP URL."
  type        = string
}

variable "clickhouse_cluster" {
  description = "ClickHouse cluster name."
  type        = string
}

variable "clickhouse_database" {
  description = "Database of Forge's tables."
  type        = string
}

variable "secret_name" {
  description = "The secret every secret value is read from."
  type        = string
}

variable "config_files" {
  description = "Operator configuration files (name => content) mounted at /etc/forge."
  type        = map(string)
}

variable "log_level" {
  description = "FORGE_LOG_LEVEL."
  type        = string
}

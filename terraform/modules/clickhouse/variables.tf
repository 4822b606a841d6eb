variable "namespace" {
  description = "Namespace of the ClickHouse and Keeper StatefulSets."
  type        = string
}

variable "name" {
  description = "Name prefix of every ClickHouse resource."
  type        = string
}

variable "cluster_name" {
  description = "Cluster name in remote_servers (Forge's FORGE_CLICKHOUSE_CLUSTER)."
  type        = string
}

variable "image" {
  description = "ClickHouse server image."
  type        = string
}

variable "keeper_image" {
  description = "ClickHouse Keeper image."
  type        = string
}

variable "shards" {
  description = "Number of shards."
  type        = number
}

variable "replicas" {
  description = "Replicas per shard."
  type        = number
}

variable "keeper_replicas" {
  description = "Keeper nodes (odd)."
  type        = number
}

variable "cpu" {
  description = "CPU request of one ClickHouse node."
  type        = string
}

variable "memory" {
  description = "Memory request and limit of one ClickHouse node."
  type        = string
}

variable "storage_size" {
  description = "Persistent volume of one ClickHouse node."
  type        = string
}

variable "storage_class" {
  description = "StorageClass of the volumes (empty: the cluster default)."
  type        = string
}

variable "secret_name" {
  description = "Secret holding clickhouse-password."
  type        = string
}

variable "namespace" {
  description = "Namespace of the Redis StatefulSet."
  type        = string
}

variable "name" {
  description = "Name of the StatefulSet and its service."
  type        = string
}

variable "image" {
  description = "Redis image."
  type        = string
}

variable "memory" {
  description = "Memory request and limit; maxmemory is set a little below it."
  type        = string
}

variable "storage_size" {
  description = "Persistent volume for the append-only file."
  type        = string
}

variable "storage_class" {
  description = "StorageClass of the volume (empty: the cluster default)."
  type        = string
}

variable "secret_name" {
  description = "Secret holding redis-password."
  type        = string
}

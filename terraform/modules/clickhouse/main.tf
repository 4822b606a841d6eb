# A ClickHouse cluster without an operator: one StatefulSet per shard (its pods are the shard's replicas),
# a ClickHouse Keeper ensemble for replication and ON CLUSTER DDL, one headless service for the pods' DNS
# names and one service for Forge's HTTP traffic. Forge creates its tables itself at start (migrations ON
# CLUSTER: ReplicatedMergeTree `<table>_local` on every node, Distributed `<table>` over them; store/ and
# billing/migrations), so nothing here knows Forge's schema.
#
# ClickHouse reads config.d/*.yaml: the configuration below is built as data and written with yamlencode.
# `@from_env` takes a value from the pod's environment (the shard number, the password).

locals {
  headless = "${var.name}-headless"
  keeper   = "${var.name}-keeper"
  domain   = "${var.namespace}.svc.cluster.local"

  keeper_hosts = [for i in range(var.keeper_replicas) : "${local.keeper}-${i}.${local.keeper}.${local.domain}"]

  server_config = {
    listen_host = "0.0.0.0"
    logger      = { level = "information", console = 1 }
    macros = {
      shard   = { "@from_env" = "CLICKHOUSE_SHARD" }
      replica = { "@from_env" = "HOSTNAME" }
    }
    remote_servers = {
      (var.cluster_name) = {
        shard = [for s in range(var.shards) : {
          internal_replication = true
          replica = [for r in range(var.replicas) : {
            host     = "${var.name}-s${s}-${r}.${local.headless}.${local.domain}"
            port     = 9000
            user     = "forge"
            password = { "@from_env" = "CLICKHOUSE_PASSWORD" }
          }]
        }]
      }
    }
    zookeeper = {
      node = [for h in local.keeper_hosts : { host = h, port = 9181 }]
    }
    distributed_ddl = { path = "/clickhouse/task_queue/ddl" }
  }

  keeper_config = {
    listen_host = "0.0.0.0"
    logger      = { level = "information", console = 1 }
    keeper_server = {
      tcp_port          = 9181
      server_id         = { "@from_env" = "KEEPER_SERVER_ID" }
      log_storage_path  = "/var/lib/clickhouse-keeper/log"
      snapshot_storage_path = "/var/lib/clickhouse-keeper/snapshots"
      coordination_settings = { operation_timeout_ms = 10000, session_timeout_ms = 30000 }
      raft_configuration = {
        server = [for i, h in local.keeper_hosts : { id = i + 1, hostname = h, port = 9234 }]
      }
    }
  }

  manifest_vars = {
    namespace       = var.namespace
    name            = var.name
    headless        = local.headless
    keeper          = local.keeper
    image           = var.image
    keeper_image    = var.keeper_image
    replicas        = var.replicas
    keeper_replicas = var.keeper_replicas
    cpu             = var.cpu
    memory          = var.memory
    storage_size    = var.storage_size
    storage_class   = var.storage_class
    secret_name     = var.secret_name
  }

  shards = { for s in range(var.shards) : tostring(s) => s }
}

resource "kubernetes_config_map_v1" "server" {
  metadata {
    name      = "${var.name}-config"
    namespace = var.namespace
  }
  data = {
    "forge.yaml" = yamlencode(local.server_config)
  }
}

resource "kubernetes_config_map_v1" "keeper" {
  metadata {
    name      = "${local.keeper}-config"
    namespace = var.namespace
  }
  data = {
    "keeper.yaml" = yamlencode(local.keeper_config)
  }
}

resource "kubernetes_manifest" "keeper_service" {
  manifest = yamldecode(templatefile("${path.module}/manifests/keeper-service.yaml", local.manifest_vars))
}

resource "kubernetes_manifest" "keeper_statefulset" {
  manifest   = yamldecode(templatefile("${path.module}/manifests/keeper-statefulset.yaml", local.manifest_vars))
  depends_on = [kubernetes_config_map_v1.keeper]
}

resource "kubernetes_manifest" "keeper_pdb" {
  manifest = yamldecode(templatefile("${path.module}/manifests/keeper-pdb.yaml", local.manifest_vars))
}

resource "kubernetes_manifest" "headless_service" {
  manifest = yamldecode(templatefile("${path.module}/manifests/headless-service.yaml", local.manifest_vars))
}

resource "kubernetes_manifest" "service" {
  manifest = yamldecode(templatefile("${path.module}/manifests/service.yaml", local.manifest_vars))
}

resource "kubernetes_manifest" "shard" {
  for_each = local.shards

  manifest   = yamldecode(templatefile("${path.module}/manifests/shard-statefulset.yaml", merge(local.manifest_vars, { shard = each.value })))
  depends_on = [kubernetes_config_map_v1.server, kubernetes_manifest.keeper_statefulset]
}

resource "kubernetes_manifest" "pdb" {
  manifest = yamldecode(templatefile("${path.module}/manifests/pdb.yaml", local.manifest_vars))
}

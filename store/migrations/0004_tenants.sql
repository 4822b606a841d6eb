-- Tenants an admin created through the API (POST /v1/tenants); the bands file names the others.
-- Append-only: a row is the audit record of the creation (who, why, when). A replayed append collapses.
-- @table tenants shard_key=cityHash64(tenant_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    tenant_id   String,
    created_at  DateTime64(3, 'UTC'),
    actor       String,
    reason      String
)
ENGINE = ReplacingMergeTree()
ORDER BY (tenant_id)
SETTINGS {{dedup_window}} = 10000;

-- BYOK keys, sealed with AES-256-GCM (v1.<master key id>.<iv>.<tag>.<ciphertext>); never the plain key.
-- Latest version per (tenant, user, provider, agent) wins; a deletion is a tombstone row (deleted = 1).
-- @table byok_keys shard_key=cityHash64(tenant_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    tenant_id  String,
    user_id    String,
    provider   LowCardinality(String),
    agent_id   String,
    sealed     String,
    created_at DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC'),
    deleted    Bool,
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, user_id, provider, agent_id);

-- @table byok_modes shard_key=cityHash64(tenant_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    tenant_id String,
    user_id   String,
    mode      String,
    version   UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, user_id)

-- API keys, shared by every API process. The secret is never stored: `hash` is sha256 (hex) of the secret part
-- of `fk_<id>_<secret>`. tenant_id '' means the key may act on every tenant. Append-only: a revocation is a new
-- row of the same id with revoked_at set and a higher version; a key's state is its row with the highest
-- version. `version` also rises across the table, so max(version) tells readers that something changed.
-- @table api_keys shard_key=cityHash64(id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    id         String,
    name       String,
    roles      Array(LowCardinality(String)),
    tenant_id  String,
    hash       String,
    created_at DateTime64(3, 'UTC'),
    expires_at Nullable(DateTime64(3, 'UTC')),
    revoked_at Nullable(DateTime64(3, 'UTC')),
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id;

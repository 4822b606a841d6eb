-- Committed-use contracts: executions per month from a start month for a term (at least the configured
-- minimum). The latest version per tenant wins (ReplacingMergeTree(version), read with FINAL).
-- @table billing_commitments shard_key=cityHash64(tenant_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    tenant_id              String,
    executions_per_month   UInt64,
    start_month            String,
    term_months            UInt16,
    created_at             DateTime64(3, 'UTC'),
    version                UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY tenant_id

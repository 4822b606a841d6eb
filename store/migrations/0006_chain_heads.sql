-- The head (newest seq and its hash) of every hash chain: log is 'cost_events' or 'guardrail_events', tenant_id
-- the stream ('' for the global guardrail stream). Written by the same flush or append that advances the chain,
-- right after its rows. Verify checks the rows reach it, so removing a stream's newest rows is detected; the
-- rows walk alone would end at the highest seq still present. Append-only: a new head is a new row with a
-- higher seq (the version), and a stream's head is the row with its highest seq.
-- @table chain_heads shard_key=cityHash64(tenant_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    log        LowCardinality(String),
    tenant_id  String,
    seq        UInt64,
    hash       String,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(seq)
ORDER BY (log, tenant_id);

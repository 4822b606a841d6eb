-- The immutable cost event log: one row per finalized task. Append-only: nothing in Forge updates or deletes it.
--
-- Sorting key (tenant_id, event_time, event_id): every query filters by tenant and time, and a replayed event
-- (same tenant, event_id and event_time) has the same key, so ReplacingMergeTree collapses it on merge and
-- `FINAL` collapses it at read time. No PARTITION BY on purpose: one INSERT is one part, so a batch is
-- committed whole or not at all (a crash never leaves half a batch, which would tear the hash chain).
--
-- seq / prev_hash / hash: the audit hash chain of the tenant's stream (see store/chain.ts).
-- Decimal inputs are kept as the strings the producer sent, so the row re-prices and re-hashes exactly.
-- @table cost_events shard_key=cityHash64(tenant_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    tenant_id            LowCardinality(String),
    seq                  UInt64,
    event_id             String,
    run_id               String,
    task_id              String,
    task_type            LowCardinality(String),
    model                LowCardinality(String),
    environment          LowCardinality(String),
    status               Enum8('success' = 1, 'failed' = 2, 'retried' = 3),
    event_time           DateTime64(3, 'UTC'),
    ingest_time          DateTime64(3, 'UTC'),
    rli_micros           Int64,
    gas_micros           Int64,
    compute_micros       Int64,
    storage_micros       Int64,
    llm_micros           Int64,
    total_micros         Int64,
    gas_used             UInt64,
    gas_price_gwei       String,
    native_usd           String,
    gas_source           LowCardinality(String),
    chain_id             UInt64,
    tx_hash              String,
    task_hours           String,
    compute_hour_usd     String,
    gb_stored            String,
    storage_gb_month_usd String,
    llm_models           Array(LowCardinality(String)),
    llm_input_tokens     Array(UInt64),
    llm_output_tokens    Array(UInt64),
    prev_hash            String,
    hash                 String,
    INDEX idx_run_id run_id TYPE bloom_filter GRANULARITY 4,
    INDEX idx_seq seq TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree()
ORDER BY (tenant_id, event_time, event_id)
SETTINGS {{dedup_window}} = 10000;

-- What billing admits and settles, shared by every API process and kept across restarts: an 'admit' row per
-- execution allowed to start (the throttle's clock) and a 'settle' row per execution settled (a user's
-- platform-key LLM spend per UTC day, against the plan's daily cap). One row per (tenant, kind, execution):
-- a replayed admit or settle collapses (ReplacingMergeTree, read with FINAL) and counts once.
-- @table billing_usage_journal shard_key=cityHash64(tenant_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    tenant_id     String,
    kind          Enum8('admit' = 1, 'settle' = 2),
    execution_id  String,
    user_id       String,
    at            DateTime64(3, 'UTC'),
    llm_micros    Int64,
    byok          Bool
)
ENGINE = ReplacingMergeTree()
ORDER BY (tenant_id, kind, execution_id)

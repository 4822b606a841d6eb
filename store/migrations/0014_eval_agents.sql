-- Agents uploaded for evaluation (eval/agents.ts): a ZIP (its bytes on disk under the data dir, named by their
-- sha256) or a container image reference. agent_id is the sha256 hex of the content (ZIP bytes, or the image
-- reference), so the same upload twice is one agent. Metadata only: the bytes are never in ClickHouse.
-- @table eval_agents shard_key=cityHash64(tenant_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    tenant_id   String,
    agent_id    String,
    name        String,
    kind        LowCardinality(String),
    ref         String,
    command     Array(String),
    size_bytes  UInt64,
    file_count  UInt32,
    created_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree()
ORDER BY (tenant_id, agent_id)
SETTINGS {{dedup_window}} = 10000;

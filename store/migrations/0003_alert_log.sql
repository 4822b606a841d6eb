-- Every alert Forge sent or tried to send (Slack, PagerDuty), with its outcome. Append-only.
-- @table alert_log shard_key=cityHash64(scope)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    alert_id    String,
    at          DateTime64(3, 'UTC'),
    channel     LowCardinality(String),
    severity    LowCardinality(String),
    scope       String,
    tenant_id   LowCardinality(String),
    dedup_key   String,
    state       LowCardinality(String),
    outcome     LowCardinality(String),
    attempts    UInt32,
    message     String,
    details     String,
    recorded_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree()
ORDER BY (tenant_id, at, alert_id)
SETTINGS {{dedup_window}} = 10000;

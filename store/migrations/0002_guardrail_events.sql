-- Guardrail history: state changes, acknowledgements, operator overrides, budget changes. Append-only.
-- `scope` is a scope key (global, tenant:<id>, run:<tenant>/<run>); tenant_id is '' for the global scope.
-- Rows are identified by event_id; a replayed append collapses on merge and under FINAL.
-- @table guardrail_events shard_key=cityHash64(scope)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    event_id    String,
    at          DateTime64(3, 'UTC'),
    kind        LowCardinality(String),
    scope       String,
    tenant_id   LowCardinality(String),
    state       LowCardinality(String),
    previous    LowCardinality(String),
    seq         UInt64,
    actor       String,
    reason      String,
    details     String,
    recorded_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree()
ORDER BY (tenant_id, at, event_id)
SETTINGS {{dedup_window}} = 10000;

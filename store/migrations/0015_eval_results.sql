-- Eval runs and their per-task results (eval/results.ts). A run row is rewritten as the run moves
-- (running -> finished | halted | failed): the newest version wins. A task result is keyed by
-- (tenant, run, task): a replayed or resumed result replaces the row, never adds a second one, and its cost
-- is the cost event `cost_event_id` in cost_events (idempotent by event id), so nothing counts twice.
-- @table eval_runs shard_key=cityHash64(tenant_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    tenant_id     String,
    run_id        String,
    suite         String,
    suite_version UInt32,
    agent_id      String,
    agent_name    String,
    executor      LowCardinality(String),
    status        LowCardinality(String),
    reason        String,
    tasks_total   UInt32,
    published     Bool,
    started_at    DateTime64(3, 'UTC'),
    finished_at   Nullable(DateTime64(3, 'UTC')),
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, run_id);

-- @table eval_task_results shard_key=cityHash64(tenant_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    tenant_id          String,
    run_id             String,
    task_id            String,
    suite              String,
    domain             LowCardinality(String),
    category           LowCardinality(String),
    status             LowCardinality(String),
    passed             Bool,
    score_milli        UInt32,
    checks             String,
    answer             String,
    logs               String,
    error              String,
    exit_code          Nullable(Int32),
    duration_ms        UInt64,
    cost_event_id      String,
    cost_total_micros  Int64,
    finished_at        DateTime64(3, 'UTC'),
    version            UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, run_id, task_id);

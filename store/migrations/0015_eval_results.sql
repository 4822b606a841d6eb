-- Eval runs and their per-task results (eval/results.ts), one table: a run's own row has task_id '' (agent,
-- executor, status, started / finished), each task's row its task_id (status, score, rubric checks, answer,
-- logs, error, duration, cost event). Rows are rewritten as a run moves: the newest version wins, so a
-- replayed or resumed task result replaces its row, never adds a second one; its cost is the cost event
-- `cost_event_id` in cost_events (idempotent by event id), so nothing counts twice.
-- @table eval_results shard_key=cityHash64(tenant_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    tenant_id          String,
    run_id             String,
    task_id            String,
    suite              String,
    suite_version      UInt32,
    agent_id           String,
    agent_name         String,
    executor           LowCardinality(String),
    domain             LowCardinality(String),
    category           LowCardinality(String),
    status             LowCardinality(String),
    error              String,
    passed             Bool,
    score_milli        UInt32,
    checks             String,
    answer             String,
    logs               String,
    exit_code          Nullable(Int32),
    duration_ms        UInt64,
    cost_event_id      String,
    cost_total_micros  Int64,
    tasks_total        UInt32,
    published          Bool,
    started_at         Nullable(DateTime64(3, 'UTC')),
    finished_at        Nullable(DateTime64(3, 'UTC')),
    version            UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, run_id, task_id);

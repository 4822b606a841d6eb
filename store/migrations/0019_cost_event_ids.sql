-- The event ids of cost_events, keyed by (tenant_id, event_id): an event id is unique per tenant across all
-- time, not only near its event time (cost_events' own key, (tenant_id, event_time, event_id), finds a resend
-- only when it carries the same time). The writer looks a batch's new ids up here and refuses one the log
-- holds under another event time (store/writer.ts). It writes a batch's ids before its rows, so an id here
-- whose row is not in the log is a write that failed midway: the writer takes the log as the truth and reads
-- an id's row there before refusing anything. event_time is in the key, so such a leftover never replaces the
-- entry of the row that is in the log. No insert deduplication window: a repeated insert only adds copies, which
-- collapse on merge and are read as one. Derived from cost_events (the backfill below rebuilds it).
-- @table cost_event_ids shard_key=cityHash64(tenant_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    tenant_id  LowCardinality(String),
    event_id   String,
    event_time DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree()
ORDER BY (tenant_id, event_id, event_time)
SETTINGS {{dedup_window}} = 0;
-- The ids of the rows stored before this table existed (once, when the migration is applied; a repeat adds
-- copies that collapse on merge).
-- @backfill
INSERT INTO {{db}}.cost_event_ids (tenant_id, event_id, event_time)
SELECT DISTINCT tenant_id, event_id, event_time FROM {{db}}.cost_events;

-- Snapshots of the control state's spend (issue 20): the guard's start-up loads the newest valid one and reads
-- only the log since it, instead of the whole cost_events. A snapshot is the log's totals per (tenant, run, UTC
-- day) over exactly the rows its watermark names: per tenant stream of cost_events, every row with a chain seq
-- up to the watermark's (store/snapshots.ts); stream_rows counts those rows as stored (copies included), so a
-- start sees when a stream's rows up to the watermark changed since (a merge collapsed a copy, a row came in
-- under the watermark) and reads that stream whole. Written rows first, header last; the header carries the number of
-- group rows and their sha256, so a snapshot cut short (a crash between the two inserts) or changed afterwards
-- reads as invalid and the next older one (or the whole log) is used. A retried insert carries the same token
-- (the dedup window drops it). Derived data, not a log: snapshots older than 30 days leave by TTL.
-- @table control_snapshots shard_key=cityHash64(snapshot_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    snapshot_id String,
    taken_at    DateTime64(3, 'UTC'),
    watermark   Map(String, UInt64),
    stream_rows Map(String, UInt64),
    groups      UInt64,
    checksum    String
)
ENGINE = ReplacingMergeTree()
ORDER BY (taken_at, snapshot_id)
TTL toDateTime(taken_at) + INTERVAL 30 DAY
SETTINGS {{dedup_window}} = 1000;
-- @table control_snapshot_groups shard_key=cityHash64(snapshot_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    snapshot_id  String,
    taken_at     DateTime64(3, 'UTC'),
    tenant_id    String,
    run_id       String,
    day          Date,
    components   Map(String, Int64),
    total_micros Int64,
    tasks        UInt64,
    succeeded    UInt64,
    failed       UInt64,
    retried      UInt64
)
ENGINE = ReplacingMergeTree()
ORDER BY (snapshot_id, tenant_id, run_id, day)
TTL toDateTime(taken_at) + INTERVAL 30 DAY
SETTINGS {{dedup_window}} = 1000;

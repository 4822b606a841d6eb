-- The canonical version each cost_events row was hashed with (store/rows.ts). Rows older than this column
-- read 1, the layout they were hashed with; a cost component added later appends its columns to the
-- canonical bytes of the rows written after it (a higher version), so older rows keep verifying.
-- @table cost_events shard_key=cityHash64(tenant_id)
ALTER TABLE {{table}} {{on_cluster}}
    ADD COLUMN IF NOT EXISTS canonical_version UInt8 DEFAULT 1;

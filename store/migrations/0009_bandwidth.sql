-- The bandwidth cost component (data transfer, priced per GB): its amount and the GB it was priced from.
-- Rows written before read 0 and '' and keep verifying under canonical version 1; rows written since hash
-- both columns (canonical version 2, store/rows.ts).
-- @table cost_events shard_key=cityHash64(tenant_id)
ALTER TABLE {{table}} {{on_cluster}}
    ADD COLUMN IF NOT EXISTS bandwidth_micros Int64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS bandwidth_quantity String DEFAULT '';

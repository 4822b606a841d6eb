-- Chain streams: each writer process appends to a tenant's logs on a stream of its own (its writer slot), so
-- two processes writing the same tenant never take the same seq (store/heads.ts). A log's chain is then one per
-- (tenant, stream); `stream` is not in the hashed bytes (a row's hash stays what it was), and a row moved to
-- another stream breaks both streams' seqs and links. Rows written before read 0: the single writer's stream,
-- as they were chained. chain_heads and the snapshot watermarks name a stream by its key (the tenant id for
-- stream 0, `<tenant>/<stream>` otherwise) and need no column. Adding columns changes no row.
-- @table cost_events shard_key=cityHash64(tenant_id)
ALTER TABLE {{table}} {{on_cluster}}
    ADD COLUMN IF NOT EXISTS stream UInt16 DEFAULT 0;
-- @table guardrail_events shard_key=cityHash64(scope)
ALTER TABLE {{table}} {{on_cluster}}
    ADD COLUMN IF NOT EXISTS stream UInt16 DEFAULT 0;

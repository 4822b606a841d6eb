-- guardrail_events joins the audit hash chain: one chain per tenant stream ('' is the global scope's stream),
-- like cost_events. `seq` is taken (a state change's own seq), so the chain's position is `chain_seq`.
-- Rows written before this migration keep chain_seq 0 and an empty hash: the stream's legacy prefix, which
-- verify counts and skips (store/chain.ts). Adding columns changes no row.
-- @table guardrail_events
ALTER TABLE {{table}} {{on_cluster}} ADD COLUMN IF NOT EXISTS chain_seq UInt64 DEFAULT 0, ADD COLUMN IF NOT EXISTS prev_hash String DEFAULT '', ADD COLUMN IF NOT EXISTS hash String DEFAULT '';

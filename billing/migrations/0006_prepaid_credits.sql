-- Prepaid dollars (USD micros): purchases and their bonus credited from Stripe Checkout, and what invoices
-- applied. One row per (tenant, entry): the entry id is derived from what caused it (the Checkout Session id,
-- the invoice month), so a replayed webhook or a re-run collapses (ReplacingMergeTree, read with FINAL) and a
-- purchase is credited exactly once. The balance is the sum of a tenant's entries.
-- @table billing_prepaid shard_key=cityHash64(tenant_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    tenant_id      String,
    entry_id       String,
    kind           Enum8('purchase' = 1, 'bonus' = 2, 'applied' = 3),
    amount_micros  Int64,
    at             DateTime64(3, 'UTC'),
    ref            String
)
ENGINE = ReplacingMergeTree()
ORDER BY (tenant_id, entry_id)

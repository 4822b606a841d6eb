-- Finalized monthly invoices (the JSON document, its total) and what was reported to Stripe for them, one row
-- per reported line: a re-run finds the line reported and sends nothing (the Idempotency-Key covers a crash
-- between the call and this row).
-- @table billing_invoices shard_key=cityHash64(tenant_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    tenant_id     String,
    month         String,
    total_micros  Int64,
    body          String,
    created_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree()
ORDER BY (tenant_id, month);

-- @table billing_stripe_reports shard_key=cityHash64(tenant_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    tenant_id     String,
    report_key    String,
    stripe_id     String,
    amount_micros Int64,
    at            DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree()
ORDER BY (tenant_id, report_key)

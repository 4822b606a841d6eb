-- A team's billing account (plan, seats, BYOK, Stripe ids, payment state). The latest version per tenant wins
-- (ReplacingMergeTree(version), read with FINAL); every version stays until merged, nothing is updated in place.
-- @table billing_accounts shard_key=cityHash64(tenant_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    tenant_id            String,
    plan_id              LowCardinality(String),
    byok                 Bool,
    seats                UInt32,
    status               LowCardinality(String),
    overage_opt_in       Bool,
    customer_id          String,
    subscription_id      String,
    last_stripe_event_at Int64,
    updated_at           DateTime64(3, 'UTC'),
    version              UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY tenant_id

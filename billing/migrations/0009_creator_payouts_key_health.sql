-- Creator statements and payouts per month, and BYOK key health.
--
-- Creator statements and payouts per month: earned, carried in, paid (a Stripe Connect transfer) and carried
-- out. One row per (creator, month): a payout run repeated finds the month done and transfers nothing more.
-- @table billing_creator_payouts shard_key=cityHash64(creator)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    creator            String,
    month              String,
    earned_micros      Int64,
    carried_in_micros  Int64,
    paid_micros        Int64,
    carry_out_micros   Int64,
    transfer_id        String,
    at                 DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree()
ORDER BY (creator, month);

-- BYOK key health: what a runner reported at settle about the user's key (a provider error, a rate limit,
-- an expired or revoked key), one row per settled execution (a replayed settle collapses into it). The latest
-- row per key is its state.
-- @table byok_key_health shard_key=cityHash64(tenant_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    tenant_id     String,
    user_id       String,
    provider      LowCardinality(String),
    agent_id      String,
    execution_id  String,
    status        LowCardinality(String),
    detail        String,
    at            DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree()
ORDER BY (tenant_id, user_id, provider, agent_id, execution_id)

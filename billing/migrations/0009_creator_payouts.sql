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
ORDER BY (creator, month)

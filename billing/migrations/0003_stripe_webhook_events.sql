-- Stripe webhook event ids already applied (Stripe delivers at least once).
-- @table stripe_webhook_events shard_key=cityHash64(event_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    event_id   String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree()
ORDER BY event_id

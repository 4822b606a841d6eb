-- Stripe webhook event ids already applied (Stripe delivers at least once).
CREATE TABLE IF NOT EXISTS {{database}}.stripe_webhook_events
(
    event_id   String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY event_id

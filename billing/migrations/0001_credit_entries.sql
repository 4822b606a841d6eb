-- The prepaid credit ledger: double-entry, append-only. One row per entry; a transaction (tx_id) sums to
-- zero per unit; an account's balance is the sum of its entries. Never updated nor deleted.
-- @table credit_entries shard_key=cityHash64(owner)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    owner      String,
    tx_id      String,
    seq        UInt16,
    account    LowCardinality(String),
    unit       LowCardinality(String),
    amount     Int64,
    kind       LowCardinality(String),
    ref        String,
    at         DateTime64(3, 'UTC'),
    memo       String,
    appended   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree()
ORDER BY (owner, at, tx_id, seq)

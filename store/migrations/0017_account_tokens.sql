-- Accounts of the web UI (issue 19), versioned like api_keys.
-- Short-lived secrets handed to a browser or a mailbox (sessions, email verification links, second-factor
-- challenges, OIDC login states; only sha256 of the token is stored; ending one is a new version with used_at),
-- and sign-in attempts (kind 'attempt', user_id = the lowercased email, data '1' for a success): the lockout
-- counts the failures since the last success, so it is shared by every API process and survives a restart.
-- @table account_tokens shard_key=cityHash64(token_hash)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    token_hash  String,
    kind        LowCardinality(String),
    user_id     String,
    data        String,
    created_at  DateTime64(3, 'UTC'),
    expires_at  DateTime64(3, 'UTC'),
    used_at     Nullable(DateTime64(3, 'UTC')),
    version     UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY token_hash;

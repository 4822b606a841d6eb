-- Accounts of the web UI (issue 19). Append-only, versioned like api_keys: a change is a new row of the same
-- id with a higher version; a record's state is its row with the highest version.
-- users: password_hash is a memory-hard hash (scrypt, never the password); totp_secret is sealed (AES-256-GCM,
-- bound to the user id); recovery_codes are sha256 hashes of the unused one-time codes.
-- @table users shard_key=cityHash64(user_id)
CREATE TABLE IF NOT EXISTS {{table}} {{on_cluster}}
(
    user_id         String,
    email           String,
    tenant_id       String,
    roles           Array(LowCardinality(String)),
    password_hash   String,
    email_verified  UInt8,
    totp_secret     String,
    totp_enabled    UInt8,
    totp_last_step  UInt64,
    recovery_codes  Array(String),
    oidc_issuer     String,
    oidc_subject    String,
    created_at      DateTime64(3, 'UTC'),
    version         UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY user_id;

-- Attribution of a cost: the user and agent that ran the task, the skill it ran, and whose key paid the LLM
-- calls ('platform' or 'byok'). Billing meters per user (daily spend caps), per agent and per skill (invoices,
-- creator revenue share) from these. Rows written before read '' (not attributed) and keep verifying under
-- their canonical version; rows written since hash the four columns (canonical version 3, store/rows.ts).
-- @table cost_events shard_key=cityHash64(tenant_id)
ALTER TABLE {{table}} {{on_cluster}}
    ADD COLUMN IF NOT EXISTS user_id String DEFAULT '',
    ADD COLUMN IF NOT EXISTS agent_id String DEFAULT '',
    ADD COLUMN IF NOT EXISTS skill_id String DEFAULT '',
    ADD COLUMN IF NOT EXISTS key_source LowCardinality(String) DEFAULT '';

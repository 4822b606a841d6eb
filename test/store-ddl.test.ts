import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadMigrations, renderDdl, renderMigrations, renderRoles } from '../store/index.ts';

const opts = { database: 'forge', cluster: 'forge_cluster' };

function columnsOf(stmt: string): string[] {
  const body = stmt.slice(stmt.indexOf('(') + 1, stmt.lastIndexOf(')\nENGINE'));
  return body
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('INDEX'))
    .map((l) => l.replace(/,$/, ''));
}

describe('migrations render for a single node and for a cluster from the same files', () => {
  it('numbers the files and renders single-node DDL without cluster clauses', () => {
    const ms = loadMigrations();
    expect(ms.map((m) => `${String(m.version).padStart(4, '0')}_${m.name}`)).toEqual([
      '0001_cost_events',
      '0002_guardrail_events',
      '0003_alert_log',
      '0004_tenants',
      '0005_guardrail_chain',
      '0006_chain_heads',
      '0007_api_keys',
      '0008_canonical_version',
      '0009_bandwidth',
      '0010_cost_event_attribution',
      '0014_eval_agents',
      '0015_eval_results',
      '0016_users',
      '0017_account_tokens',
      '0018_control_snapshots',
      '0019_cost_event_ids',
      '0020_chain_streams',
    ]);
    // A file creates one table per `-- @table` directive (0015 creates two).
    const tablesIn = (version: number): number => (loadMigrations().find((x) => x.version === version)!.text.match(/^--\s*@table /gm) ?? []).length;
    for (const m of renderMigrations('single', opts).filter((x) => !x.statements[0]!.startsWith('ALTER'))) {
      expect(m.statements).toHaveLength(m.name === 'guardrail_chain' ? 1 : tablesIn(m.version));
      for (const s of m.statements) {
        expect(s).not.toMatch(/ON CLUSTER|Replicated|Distributed|\{\{/);
        if (m.name === 'guardrail_chain') {
          expect(s).toMatch(/^ALTER TABLE forge\.guardrail_events\s+ADD COLUMN IF NOT EXISTS chain_seq UInt64 DEFAULT 0, /);
          continue;
        }
        expect(s).toMatch(m.statements.length === 1 ? new RegExp(`^CREATE TABLE IF NOT EXISTS forge\\.${m.name}\\s`) : /^CREATE TABLE IF NOT EXISTS forge\.\w+\s/);
        if (m.version <= 3) {
          expect(s).toContain('ENGINE = ReplacingMergeTree()');
          expect(s).toContain('non_replicated_deduplication_window = 10000');
        }
      }
    }
    // The id index is filled from the log once, after its table exists, before the migration is recorded.
    const ids = renderMigrations('single', opts).find((m) => m.name === 'cost_event_ids')!;
    expect(ids.backfill).toEqual([
      'INSERT INTO forge.cost_event_ids (tenant_id, event_id, event_time)\nSELECT DISTINCT tenant_id, event_id, event_time FROM forge.cost_events',
    ]);
    expect(ids.statements[0]).toContain('ORDER BY (tenant_id, event_id, event_time)');
    // Heads and keys keep their newest version.
    const [heads, keys] = renderMigrations('single', opts).slice(5).map((m) => m.statements[0]!);
    expect(heads).toContain('ENGINE = ReplacingMergeTree(seq)\nORDER BY (log, tenant_id)');
    expect(keys).toContain('ENGINE = ReplacingMergeTree(version)\nORDER BY id');
  });

  it('renders ReplicatedMergeTree local tables plus Distributed tables, all ON CLUSTER, with the same columns', () => {
    const creates = (ms: ReturnType<typeof renderMigrations>) => ms.filter((x) => !x.statements[0]!.startsWith('ALTER'));
    expect(renderMigrations('cluster', opts).map((m) => m.checksum)).toEqual(renderMigrations('single', opts).map((m) => m.checksum));
    const single = creates(renderMigrations('single', opts));
    const cluster = creates(renderMigrations('cluster', opts));
    const shardKeys: Record<string, string> = { cost_events: 'cityHash64(tenant_id)', guardrail_events: 'cityHash64(scope)', alert_log: 'cityHash64(scope)', tenants: 'cityHash64(tenant_id)', chain_heads: 'cityHash64(tenant_id)', api_keys: 'cityHash64(id)', eval_agents: 'cityHash64(tenant_id)', eval_results: 'cityHash64(tenant_id)', users: 'cityHash64(user_id)', account_tokens: 'cityHash64(token_hash)', control_snapshots: 'cityHash64(snapshot_id)', control_snapshot_groups: 'cityHash64(snapshot_id)', cost_event_ids: 'cityHash64(tenant_id)' };
    for (const [i, m] of cluster.entries()) {
      if (m.name === 'guardrail_chain') {
        expect(m.statements).toHaveLength(2);
        const [local, dist] = m.statements as [string, string];
        // New columns go on the replicated local tables and on the Distributed table over them.
        expect(local).toMatch(/^ALTER TABLE forge\.guardrail_events_local ON CLUSTER 'forge_cluster' ADD COLUMN IF NOT EXISTS chain_seq /);
        expect(dist).toBe(local.replace('guardrail_events_local', 'guardrail_events'));
        continue;
      }
      // Each table of the file: its replicated local table, then the Distributed table over it.
      expect(m.statements).toHaveLength(2 * single[i]!.statements.length);
      for (let k = 0; k < m.statements.length / 2; k++) {
        const [local, dist] = [m.statements[2 * k]!, m.statements[2 * k + 1]!];
        const table = /^CREATE TABLE IF NOT EXISTS forge\.(\w+)_local /.exec(local)?.[1] ?? '';
        if (m.statements.length === 2) expect(table).toBe(m.name);
        const engine = 'ReplacingMergeTree';
        expect(local).toMatch(new RegExp(`^CREATE TABLE IF NOT EXISTS forge\\.${table}_local ON CLUSTER 'forge_cluster'`));
        const version = { chain_heads: ', seq', api_keys: ', version', users: ', version', account_tokens: ', version', eval_results: ', version' }[table] ?? '';
        expect(local).toContain(`ENGINE = Replicated${engine}('/clickhouse/tables/{shard}/forge/${table}_local', '{replica}'${version})`);
        if (m.version <= 3) expect(local).toContain('replicated_deduplication_window = 10000');
        expect(local).not.toContain('non_replicated');
        expect(columnsOf(local)).toEqual(columnsOf(single[i]!.statements[k]!));
        expect(dist).toBe(
          `CREATE TABLE IF NOT EXISTS forge.${table} ON CLUSTER 'forge_cluster' AS forge.${table}_local\n` +
            `ENGINE = Distributed('forge_cluster', 'forge', '${table}_local', ${shardKeys[table]})`,
        );
      }
    }
    // A tenant's stream lives on one shard, so its chain and its dedup stay local to that shard.
    expect(cluster[0]!.statements[1]).toContain('cityHash64(tenant_id)');
  });

  it('creates an INSERT-only writer role and a SELECT-only auditor role; nothing may alter the log', () => {
    for (const mode of ['single', 'cluster'] as const) {
      const roles = renderRoles(mode, opts);
      const grants = roles.filter((r) => r.startsWith('GRANT'));
      const to = (role: string) => grants.filter((g) => g.endsWith(`TO ${role}`));
      for (const g of to('forge_writer')) expect(g).toMatch(/^GRANT (ON CLUSTER 'forge_cluster' )?INSERT ON forge\.\w+ TO forge_writer$/);
      expect(to('forge_writer').length).toBe(mode === 'cluster' ? 22 : 11);
      expect(to('forge_auditor')).toEqual([`GRANT${mode === 'cluster' ? " ON CLUSTER 'forge_cluster'" : ''} SELECT ON forge.* TO forge_auditor`]);
      // The migrator may add columns (a schema change that touches no row); nothing else may alter anything.
      const addColumn = `GRANT${mode === 'cluster' ? " ON CLUSTER 'forge_cluster'" : ''} ALTER ADD COLUMN ON forge.* TO forge_migrator`;
      expect(grants).toContain(addColumn);
      for (const g of grants.filter((x) => x !== addColumn)) expect(g).not.toMatch(/ALTER|DELETE|UPDATE|TRUNCATE|DROP|ALL/);
      if (mode === 'cluster') for (const r of roles) expect(r).toContain("ON CLUSTER 'forge_cluster'");
    }
    const ddl = renderDdl('cluster', opts);
    expect(ddl).toContain("CREATE DATABASE IF NOT EXISTS forge ON CLUSTER 'forge_cluster';");
    expect(ddl).toContain("ReplicatedMergeTree('/clickhouse/tables/{shard}/forge/schema_migrations', '{replica}')");
    // 0010 (attribution columns) adds two: the local and the Distributed table.
    // 0018 (control snapshots) creates two tables: four statements.
    // 0019 (cost event ids) creates one table and fills it from the log once: three statements.
    // 0020 (chain streams) adds a column to two tables: four statements.
    expect(ddl.match(/;\n/g)?.length).toBe(2 + 2 * 14 + 4 + 2 + 1 + 4 + roles().length);
    function roles() {
      return renderRoles('cluster', opts);
    }
  });

  it('renders an added column for the single table, and for the local and the Distributed tables of a cluster', () => {
    const text = "-- @table cost_events shard_key=cityHash64(tenant_id)\nALTER TABLE {{table}} {{on_cluster}}\n    ADD COLUMN IF NOT EXISTS x_micros Int64 DEFAULT 0;\n";
    const m = [{ version: 9, name: 'x', checksum: 'c', text }];
    expect(renderMigrations('single', opts, m)[0]!.statements).toEqual(['ALTER TABLE forge.cost_events \n    ADD COLUMN IF NOT EXISTS x_micros Int64 DEFAULT 0']);
    expect(renderMigrations('cluster', opts, m)[0]!.statements).toEqual([
      "ALTER TABLE forge.cost_events_local ON CLUSTER 'forge_cluster'\n    ADD COLUMN IF NOT EXISTS x_micros Int64 DEFAULT 0",
      "ALTER TABLE forge.cost_events ON CLUSTER 'forge_cluster'\n    ADD COLUMN IF NOT EXISTS x_micros Int64 DEFAULT 0",
    ]);
  });

  it('rejects identifiers that are not plain names', () => {
    expect(() => renderMigrations('single', { database: 'forge; DROP TABLE x' })).toThrow(expect.objectContaining({ code: 'FORGE_ERR_STORE_CONFIG', field: 'database' }));
    expect(() => renderMigrations('cluster', { database: 'forge', cluster: "c' x" })).toThrow(expect.objectContaining({ field: 'cluster' }));
    expect(() => renderMigrations('cluster', { database: 'forge' })).toThrow(expect.objectContaining({ field: 'cluster' }));
  });

  it('has no code path that updates or deletes log rows', () => {
    const dir = join(import.meta.dirname, '..', 'store');
    const files = readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts') || f.endsWith('.sql'));
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) {
      const text = readFileSync(join(dir, f), 'utf8')
        .split('\n')
        .filter((l) => !/^\s*(\/\/|\*|\/\*\*|--)/.test(l))
        .join('\n');
      // A migration may ALTER TABLE ... ADD COLUMN (no row changes); any other ALTER TABLE is refused.
      expect(text, f).not.toMatch(/\bALTER\s+TABLE\s+[\w{}.]+\s+(?!\s|(\{\{on_cluster\}\}\s+)?ADD\s+COLUMN\b)/i);
      expect(text, f).not.toMatch(/\b(DELETE\s+FROM|ALTER\s+\w+\s+(UPDATE|DELETE)|TRUNCATE|DROP\s+TABLE|OPTIMIZE\s+TABLE)\b/i);
    }
  });
});

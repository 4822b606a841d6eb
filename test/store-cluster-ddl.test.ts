import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { createChdbConnection } from 'chdb/connection';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateBilling, renderBillingMigrations } from '../billing/index.ts';
import { openStore, renderMigrations, type RenderedMigration } from '../store/index.ts';

// The cluster DDL (ReplicatedMergeTree `<t>_local` + Distributed `<t>`, ON CLUSTER) must create the same
// tables, column for column, as the embedded schema. No ClickHouse cluster runs here, so:
// 1. the embedded tables are created the way Forge creates them (openStore + migrateBilling on chdb);
// 2. every cluster statement must parse (formatQuery, the engine's own parser);
// 3. each cluster `_local` statement runs in chdb with its replication stripped (Replicated<X>(path, replica,
//    args) -> <X>(args), no ON CLUSTER) in a database of its own, and `system.columns` / `system.tables` of
//    both are compared; the Distributed statement must be `AS <db>.<t>_local` (same columns by construction).
const CLUSTER = 'forge_cluster';
let dir = '';
let client: ClickHouseClient;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'forge-cluster-ddl-'));
  // The embedded schema exactly as `forge start` creates it: the store's migrations, then billing's.
  const store = await openStore({ dataDir: dir, database: 'emb' });
  await migrateBilling(store.client, 'emb');
  await store.close();
  client = createClient({ connection: createChdbConnection({ path: dir }) } as unknown as Parameters<typeof createClient>[0]);
}, 60_000);

afterAll(async () => {
  await client?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function rows<T>(query: string, params: Record<string, unknown> = {}): Promise<T[]> {
  const rs = await client.query({ query, query_params: params, format: 'JSONEachRow' });
  return rs.json<T>();
}

interface Column {
  table: string;
  position: number;
  name: string;
  type: string;
  default_kind: string;
  default_expression: string;
  compression_codec: string;
}

async function columns(db: string): Promise<Column[]> {
  return rows<Column>(
    `SELECT table, toUInt32(position) AS position, name, type, default_kind, default_expression, compression_codec
       FROM system.columns WHERE database = {db: String} ORDER BY table, position`,
    { db },
  );
}

async function tables(db: string): Promise<Array<{ name: string; engine: string; sorting_key: string; primary_key: string }>> {
  return rows(`SELECT name, engine, sorting_key, primary_key FROM system.tables WHERE database = {db: String} ORDER BY name`, { db });
}

/** A cluster `_local` statement made runnable on one node: no ON CLUSTER, the replication arguments removed. */
function unreplicated(stmt: string, fromDb: string, toDb: string): string {
  return stmt
    .replace(` ON CLUSTER '${CLUSTER}'`, '')
    .replace(/ENGINE = Replicated(\w*MergeTree)\('[^']*', '\{replica\}'(?:, )?([^)]*)\)/, 'ENGINE = $1($2)')
    .replace(/replicated_deduplication_window/g, 'non_replicated_deduplication_window')
    .replace(new RegExp(`\\b${fromDb}\\.(\\w+)_local\\b`), `${toDb}.$1`);
}

function clusterRendering(): Array<{ part: string; ms: RenderedMigration[] }> {
  return [
    { part: 'store', ms: renderMigrations('cluster', { database: 'forge', cluster: CLUSTER }) },
    { part: 'billing', ms: renderBillingMigrations('cluster', { database: 'forge', cluster: CLUSTER }) },
  ];
}

describe('the cluster DDL matches the embedded schema column for column', () => {
  it('renders every embedded table (store and billing) as a replicated local table plus a Distributed table', async () => {
    const embedded = (await tables('emb')).map((t) => t.name).filter((n) => n !== 'schema_migrations' && n !== 'billing_migrations');
    const locals: string[] = [];
    for (const { ms } of clusterRendering()) {
      for (const m of ms) {
        for (const s of m.statements) {
          const local = /^CREATE TABLE IF NOT EXISTS forge\.(\w+)_local ON CLUSTER 'forge_cluster'\n/.exec(s);
          if (local) {
            locals.push(local[1]!);
            expect(s).toMatch(/ENGINE = Replicated\w*MergeTree\('\/clickhouse\/tables\/\{shard\}\/forge\/\w+_local', '\{replica\}'/);
          } else if (s.startsWith('ALTER TABLE')) {
            // A column added later: on the local table and on the Distributed table over it, never anything else.
            expect(s).toMatch(/^ALTER TABLE forge\.\w+ ON CLUSTER 'forge_cluster'\s+ADD COLUMN IF NOT EXISTS /);
          } else {
            expect(s).toMatch(/^CREATE TABLE IF NOT EXISTS forge\.(\w+) ON CLUSTER 'forge_cluster' AS forge\.\1_local\nENGINE = Distributed\('forge_cluster', 'forge', '\1_local', cityHash64\(\w+\)\)$/);
          }
        }
      }
    }
    expect(locals.sort()).toEqual(embedded.sort());
    expect(embedded).toEqual(expect.arrayContaining(['cost_events', 'guardrail_events', 'alert_log', 'tenants', 'credit_entries', 'billing_accounts', 'stripe_webhook_events', 'byok_keys', 'byok_modes']));
  });

  it('parses every cluster statement with the engine parser', async () => {
    for (const { ms } of clusterRendering()) {
      for (const s of ms.flatMap((m) => m.statements)) {
        const [r] = await rows<{ f: string }>('SELECT formatQuery({q: String}) AS f', { q: s });
        expect(r!.f, s).toMatch(/^(CREATE TABLE IF NOT EXISTS|ALTER TABLE) forge\./);
        expect(r!.f).toContain("ON CLUSTER forge_cluster");
      }
    }
  });

  it('creates, without replication, the same columns, types, defaults, codecs and sorting keys', async () => {
    await client.command({ query: 'CREATE DATABASE IF NOT EXISTS clu' });
    for (const { ms } of clusterRendering()) {
      for (const s of ms.flatMap((m) => m.statements)) {
        if (!/_local ON CLUSTER/.test(s.split('\n')[0]!)) continue;
        await client.command({ query: unreplicated(s, 'forge', 'clu') });
      }
    }
    const emb = (await columns('emb')).filter((c) => c.table !== 'schema_migrations' && c.table !== 'billing_migrations');
    const clu = await columns('clu');
    expect(emb.length).toBeGreaterThan(80);
    expect(clu).toEqual(emb);
    const keys = (ts: Awaited<ReturnType<typeof tables>>) =>
      ts.filter((t) => !t.name.endsWith('migrations')).map((t) => ({ name: t.name, engine: t.engine, sorting_key: t.sorting_key, primary_key: t.primary_key }));
    expect(keys(await tables('clu'))).toEqual(keys(await tables('emb')));
  });
});

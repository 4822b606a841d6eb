import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClickHouseClient } from '@clickhouse/client';
import { loadMigrations, renderMigrations, type DdlMode, type Migration, type RenderedMigration, type RenderOptions } from '../../store/index.ts';
import { BillingError } from '../errors.ts';
import type { CreditEntryStore, CreditUnit, LedgerEntry, TxKind } from './entries.ts';

const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'migrations');
const DB_RE = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/** The subset of @clickhouse/client the billing tables need (the store's client, embedded chDB or server). */
export type BillingClickHouse = Pick<ClickHouseClient, 'command' | 'insert' | 'query'>;

export function checkDb(database: string): string {
  if (!DB_RE.test(database)) throw new BillingError('FORGE_ERR_BILLING_CONFIG', `database name "${database}" must match ${DB_RE.source}`, { field: 'database' });
  return database;
}

/** The billing tables' migration files (billing/migrations/NNNN_*.sql), in the store's migration format. */
export function loadBillingMigrations(): Migration[] {
  return loadMigrations(MIGRATIONS_DIR);
}

/**
 * The billing migrations rendered for one deployment mode, by the store's renderer: 'single' (embedded engine
 * or one server) or 'cluster' (ReplicatedMergeTree `<table>_local` on every node, Distributed under the plain
 * name, ON CLUSTER), so billing has the same cluster variant as the event log.
 */
export function renderBillingMigrations(mode: DdlMode, opts: RenderOptions): RenderedMigration[] {
  return renderMigrations(mode, opts, loadBillingMigrations());
}

/** The ledger of applied billing migrations (by file name), replicated on a cluster like every table. */
function billingLedgerDdl(db: string, cluster: string | undefined): string {
  const oc = cluster ? ` ON CLUSTER '${cluster}'` : '';
  const engine = cluster ? `ReplicatedMergeTree('/clickhouse/tables/{shard}/${db}/billing_migrations', '{replica}')` : 'MergeTree';
  return `CREATE TABLE IF NOT EXISTS ${db}.billing_migrations${oc} (name String, applied DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = ${engine} ORDER BY name`;
}

/**
 * Applies billing/migrations/NNNN_*.sql in order, once each (recorded in `billing_migrations`). With `cluster`
 * the cluster rendering is applied (every statement ON CLUSTER). Every statement is IF NOT EXISTS, so a crash
 * between a statement and its record is harmless.
 */
export async function migrateBilling(client: BillingClickHouse, database: string, cluster?: string): Promise<string[]> {
  const db = checkDb(database);
  if (cluster !== undefined) checkDb(cluster);
  await client.command({ query: `CREATE DATABASE IF NOT EXISTS ${db}${cluster ? ` ON CLUSTER '${cluster}'` : ''}` });
  await client.command({ query: billingLedgerDdl(db, cluster) });
  const rs = await client.query({ query: `SELECT name FROM ${db}.billing_migrations`, format: 'JSONEachRow' });
  const done = new Set((await rs.json<{ name: string }>()).map((r) => r.name));
  const rendered = renderBillingMigrations(cluster ? 'cluster' : 'single', { database: db, ...(cluster ? { cluster } : {}) });
  const applied: string[] = [];
  for (const m of rendered) {
    const file = `${String(m.version).padStart(4, '0')}_${m.name}.sql`;
    if (done.has(file)) continue;
    for (const stmt of m.statements) await client.command({ query: stmt });
    await client.insert({ table: `${db}.billing_migrations`, values: [{ name: file }], format: 'JSONEachRow' });
    applied.push(file);
  }
  return applied;
}

interface Row {
  owner: string;
  tx_id: string;
  seq: number;
  account: string;
  unit: string;
  amount: string;
  kind: string;
  ref: string;
  at_ms: string;
  memo: string;
}

/**
 * Credit entries in ClickHouse (`credit_entries`). One transaction = one INSERT block, which ClickHouse
 * writes as one part: all entries or none. The hold decision itself is made in-process by CreditLedger.
 */
export class ClickHouseCreditEntryStore implements CreditEntryStore {
  private readonly table: string;

  constructor(
    private readonly client: BillingClickHouse,
    database: string,
  ) {
    this.table = `${checkDb(database)}.credit_entries`;
  }

  async append(entries: readonly LedgerEntry[]): Promise<void> {
    if (entries.length === 0) return;
    await this.client.insert({
      table: this.table,
      values: entries.map((e) => ({
        owner: e.owner,
        tx_id: e.txId,
        seq: e.seq,
        account: e.account,
        unit: e.unit,
        amount: e.amount,
        kind: e.kind,
        ref: e.ref,
        at: e.at,
        memo: e.memo,
      })),
      format: 'JSONEachRow',
    });
  }

  async load(owner: string): Promise<LedgerEntry[]> {
    const rs = await this.client.query({
      query: `SELECT owner, tx_id, seq, account, unit, toString(amount) AS amount, kind, ref,
                     toString(toUnixTimestamp64Milli(at)) AS at_ms, memo
              FROM ${this.table} WHERE owner = {owner:String}
              ORDER BY at, tx_id, seq`,
      query_params: { owner },
      format: 'JSONEachRow',
    });
    const rows = await rs.json<Row>();
    return rows.map((r) => ({
      owner: r.owner,
      txId: r.tx_id,
      seq: Number(r.seq),
      account: r.account,
      unit: r.unit as CreditUnit,
      amount: Number(r.amount),
      kind: r.kind as TxKind,
      ref: r.ref,
      at: Number(r.at_ms),
      memo: r.memo,
    }));
  }

  async totals(): Promise<Record<CreditUnit, number>> {
    const rs = await this.client.query({
      query: `SELECT unit, toString(sum(amount)) AS total FROM ${this.table} GROUP BY unit`,
      format: 'JSONEachRow',
    });
    const t: Record<CreditUnit, number> = { credit: 0, run: 0 };
    for (const r of await rs.json<{ unit: string; total: string }>()) if (r.unit === 'credit' || r.unit === 'run') t[r.unit] = Number(r.total);
    return t;
  }

  /** Sum of every transaction per unit that is not zero (empty for a sound ledger). For auditors. */
  async unbalancedTransactions(owner: string): Promise<{ txId: string; unit: string; sum: number }[]> {
    const rs = await this.client.query({
      query: `SELECT tx_id, unit, toString(sum(amount)) AS s FROM ${this.table} WHERE owner = {owner:String}
              GROUP BY tx_id, unit HAVING sum(amount) != 0`,
      query_params: { owner },
      format: 'JSONEachRow',
    });
    return (await rs.json<{ tx_id: string; unit: string; s: string }>()).map((r) => ({ txId: r.tx_id, unit: r.unit, sum: Number(r.s) }));
  }

  async close(): Promise<void> {}
}

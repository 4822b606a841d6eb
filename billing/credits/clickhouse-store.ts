import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClickHouseClient } from '@clickhouse/client';
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

/**
 * Applies billing/migrations/NNNN_*.sql in order, once each (recorded in `billing_migrations`).
 * `{{database}}` in a file is the (validated) database identifier; identifiers cannot be query parameters.
 */
export async function migrateBilling(client: BillingClickHouse, database: string): Promise<string[]> {
  const db = checkDb(database);
  await client.command({ query: `CREATE DATABASE IF NOT EXISTS ${db}` });
  await client.command({
    query: `CREATE TABLE IF NOT EXISTS ${db}.billing_migrations (name String, applied DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY name`,
  });
  const rs = await client.query({ query: `SELECT name FROM ${db}.billing_migrations`, format: 'JSONEachRow' });
  const done = new Set((await rs.json<{ name: string }>()).map((r) => r.name));
  const files = readdirSync(MIGRATIONS_DIR)
    .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
    .sort();
  const applied: string[] = [];
  for (const f of files) {
    if (done.has(f)) continue;
    const sql = readFileSync(join(MIGRATIONS_DIR, f), 'utf8').replaceAll('{{database}}', db);
    // One statement per command: a file may hold several, each ending with ';' at the end of a line.
    for (const stmt of sql.split(/;\s*(?:\n|$)/).map((x) => x.trim()).filter((x) => x.replace(/^--.*$/gm, '').trim() !== '')) {
      await client.command({ query: stmt });
    }
    await client.insert({ table: `${db}.billing_migrations`, values: [{ name: f }], format: 'JSONEachRow' });
    applied.push(f);
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

import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClickHouseClient } from '@clickhouse/client';
import { STORE_ERROR_CODES, StoreError } from './errors.ts';

/**
 * Migrations are the numbered files in store/migrations (`0001_cost_events.sql`, ...). One definition renders
 * two ways: 'single' (one server or the embedded engine) and 'cluster' (ReplicatedMergeTree tables named
 * `<table>_local` on every node, a Distributed table under the plain name, every statement ON CLUSTER).
 *
 * A table grows only by `ALTER TABLE {{table}} {{on_cluster}} ADD COLUMN IF NOT EXISTS ... DEFAULT ...`
 * (a new cost component's columns): old rows read the default, nothing is rewritten.
 *
 * Markers in the files: `{{table}}` (the table a `-- @table <name> shard_key=<expr>` directive above the
 * statement names), `{{on_cluster}}`, `{{db}}`, `{{dedup_window}}` (the engine's insert-deduplication
 * window setting, which differs between plain and replicated MergeTree).
 *
 * A statement under a `-- @backfill` directive fills a new derived table from the log (an INSERT ... SELECT
 * over the plain table names, which are the Distributed tables on a cluster). It is not DDL: it runs once,
 * after the migration's DDL and before the migration is recorded, so a crash in between repeats it (it must
 * be harmless twice: the tables it fills collapse copies).
 */
export type DdlMode = 'single' | 'cluster';

export interface RenderOptions {
  database: string;
  /** Cluster name; required for 'cluster'. */
  cluster?: string;
}

export interface Migration {
  version: number;
  name: string;
  /** sha256 of the file text: an applied migration must never change. */
  checksum: string;
  text: string;
}

export interface RenderedMigration {
  version: number;
  name: string;
  checksum: string;
  /** The DDL (CREATE TABLE, ADD COLUMN), ON CLUSTER on a cluster. */
  statements: string[];
  /** `-- @backfill` statements, run once after the DDL. */
  backfill: string[];
}

const here = dirname(fileURLToPath(import.meta.url));
const MIGRATIONS_DIR = join(here, 'migrations');
const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

export const MIGRATIONS_TABLE = 'schema_migrations';

/** The migration files, in version order. */
export function loadMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  const out: Migration[] = [];
  for (const f of readdirSync(dir).sort()) {
    const m = /^(\d{4})_([a-z0-9_]+)\.sql$/.exec(f);
    if (!m) continue;
    const text = readFileSync(join(dir, f), 'utf8');
    out.push({
      version: Number(m[1]),
      name: m[2] as string,
      checksum: createHash('sha256').update(text).digest('hex'),
      text,
    });
  }
  for (let i = 1; i < out.length; i++) {
    if ((out[i] as Migration).version === (out[i - 1] as Migration).version) {
      throw new StoreError(STORE_ERROR_CODES.MIGRATION, `two migrations share version ${(out[i] as Migration).version}`);
    }
  }
  return out;
}

export function assertIdentifier(value: string, what: string): string {
  if (!IDENT.test(value)) {
    throw new StoreError(STORE_ERROR_CODES.CONFIG, `${what} must match ${IDENT.source}, got ${JSON.stringify(value)}`, { field: what });
  }
  return value;
}

function onCluster(opts: RenderOptions, mode: DdlMode): string {
  return mode === 'cluster' ? `ON CLUSTER '${opts.cluster ?? ''}'` : '';
}

function checkOptions(mode: DdlMode, opts: RenderOptions): void {
  assertIdentifier(opts.database, 'database');
  if (mode === 'cluster') assertIdentifier(opts.cluster ?? '', 'cluster');
}

/** Splits a file into statements (`;` at the end of a line ends one), keeping each one's leading comments. */
function splitStatements(text: string): string[] {
  const out: string[] = [];
  let cur: string[] = [];
  for (const line of text.split('\n')) {
    cur.push(line);
    if (/;\s*$/.test(line) && !line.trimStart().startsWith('--')) {
      out.push(cur.join('\n').replace(/;\s*$/, ''));
      cur = [];
    }
  }
  if (cur.join('').trim() !== '') out.push(cur.join('\n'));
  return out;
}

function stripComments(sql: string): string {
  return sql
    .split('\n')
    .filter((l) => !l.trimStart().startsWith('--'))
    .join('\n')
    .trim();
}

function renderStatement(raw: string, mode: DdlMode, opts: RenderOptions): string[] {
  const directive = /^--\s*@table\s+([a-z_]+)(?:\s+shard_key=(\S+))?\s*$/m.exec(raw);
  const db = opts.database;
  let sql = stripComments(raw)
    .replaceAll('{{db}}', db)
    .replaceAll('{{on_cluster}}', onCluster(opts, mode))
    .replaceAll('{{dedup_window}}', mode === 'cluster' ? 'replicated_deduplication_window' : 'non_replicated_deduplication_window');
  if (!directive) {
    if (sql.includes('{{table}}')) throw new StoreError(STORE_ERROR_CODES.MIGRATION, '{{table}} used without a -- @table directive');
    return [sql];
  }
  const table = directive[1] as string;
  const shardKey = directive[2] ?? 'rand()';
  if (mode === 'single') return [sql.replaceAll('{{table}}', `${db}.${table}`)];
  const local = `${table}_local`;
  // A new column goes on the replicated tables and on the Distributed table over them.
  if (/^ALTER\s+TABLE\b/i.test(sql)) return [sql.replaceAll('{{table}}', `${db}.${local}`), sql.replaceAll('{{table}}', `${db}.${table}`)];
  sql = sql
    .replaceAll('{{table}}', `${db}.${local}`)
    .replace(/ENGINE\s*=\s*(\w*MergeTree)\(([^)]*)\)/, (_m, engine: string, args: string) => {
      const zk = `'/clickhouse/tables/{shard}/${db}/${local}', '{replica}'`;
      return `ENGINE = Replicated${engine}(${args.trim() === '' ? zk : `${zk}, ${args}`})`;
    });
  const distributed =
    `CREATE TABLE IF NOT EXISTS ${db}.${table} ${onCluster(opts, mode)} AS ${db}.${local}\n` +
    `ENGINE = Distributed('${opts.cluster ?? ''}', '${db}', '${local}', ${shardKey})`;
  return [sql, distributed];
}

const BACKFILL = /^--\s*@backfill\s*$/m;

/** The migrations rendered as SQL statements for one deployment mode. */
export function renderMigrations(mode: DdlMode, opts: RenderOptions, migrations: Migration[] = loadMigrations()): RenderedMigration[] {
  checkOptions(mode, opts);
  return migrations.map((m) => {
    const all = splitStatements(m.text).filter((s) => stripComments(s) !== '');
    return {
      version: m.version,
      name: m.name,
      checksum: m.checksum,
      statements: all.filter((s) => !BACKFILL.test(s)).flatMap((s) => renderStatement(s, mode, opts)),
      backfill: all.filter((s) => BACKFILL.test(s)).map((s) => stripComments(s).replaceAll('{{db}}', opts.database)),
    };
  });
}

/** Statements that create the database and the migrations ledger. */
export function renderBootstrap(mode: DdlMode, opts: RenderOptions): string[] {
  checkOptions(mode, opts);
  const db = opts.database;
  const engine =
    mode === 'cluster'
      ? `ReplicatedMergeTree('/clickhouse/tables/{shard}/${db}/${MIGRATIONS_TABLE}', '{replica}')`
      : 'MergeTree()';
  return [
    `CREATE DATABASE IF NOT EXISTS ${db} ${onCluster(opts, mode)}`.trim(),
    `CREATE TABLE IF NOT EXISTS ${db}.${MIGRATIONS_TABLE} ${onCluster(opts, mode)}
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = ${engine}
ORDER BY version`,
  ];
}

/** The append-only log tables, by their plain (queried) names. */
export const LOG_TABLES = ['cost_events', 'guardrail_events', 'alert_log', 'tenants'] as const;
/** Append-only tables beside the logs: chain heads and API keys (a change is a new row with a higher version). */
export const VERSIONED_TABLES = ['chain_heads', 'api_keys', 'users', 'account_tokens'] as const;
/**
 * Tables derived from the logs and rebuilt from them when lost (snapshots of the control state's spend, the
 * index of cost event ids).
 */
export const DERIVED_TABLES = ['control_snapshots', 'control_snapshot_groups', 'cost_event_ids'] as const;

/**
 * Roles for production: `forge_writer` may only INSERT into the log tables (and the versioned tables beside
 * them), `forge_auditor` may only SELECT. The Forge service user gets both; no role holds DELETE, UPDATE,
 * TRUNCATE or DROP on the log. `forge_migrator` (used by whoever applies migrations) may create tables, add
 * columns and record migrations, nothing more.
 */
export function renderRoles(mode: DdlMode, opts: RenderOptions): string[] {
  checkOptions(mode, opts);
  const db = opts.database;
  const oc = onCluster(opts, mode);
  const grantOc = oc === '' ? '' : ` ${oc}`;
  const tables = [...LOG_TABLES, ...VERSIONED_TABLES, ...DERIVED_TABLES].flatMap((t) => (mode === 'cluster' ? [t, `${t}_local`] : [t]));
  return [
    `CREATE ROLE IF NOT EXISTS forge_writer ${oc}`.trim(),
    `CREATE ROLE IF NOT EXISTS forge_auditor ${oc}`.trim(),
    `CREATE ROLE IF NOT EXISTS forge_migrator ${oc}`.trim(),
    ...tables.map((t) => `GRANT${grantOc} INSERT ON ${db}.${t} TO forge_writer`),
    `GRANT${grantOc} SELECT ON ${db}.* TO forge_auditor`,
    `GRANT${grantOc} CREATE DATABASE, CREATE TABLE ON ${db}.* TO forge_migrator`,
    `GRANT${grantOc} ALTER ADD COLUMN ON ${db}.* TO forge_migrator`,
    `GRANT${grantOc} SELECT, INSERT ON ${db}.${MIGRATIONS_TABLE} TO forge_migrator`,
    // The backfills (`-- @backfill`): read the log, fill the derived table.
    `GRANT${grantOc} SELECT ON ${db}.cost_events TO forge_migrator`,
    `GRANT${grantOc} INSERT ON ${db}.cost_event_ids TO forge_migrator`,
  ];
}

/** The whole production DDL as one script: database, ledger, migrations, roles. */
export function renderDdl(mode: DdlMode, opts: RenderOptions): string {
  const parts = [
    ...renderBootstrap(mode, opts),
    ...renderMigrations(mode, opts).flatMap((m) => [...m.statements, ...m.backfill]),
    ...renderRoles(mode, opts),
  ];
  return parts.map((s) => `${s};`).join('\n\n') + '\n';
}

export interface AppliedMigration {
  version: number;
  name: string;
}

/**
 * Applies the missing migrations in order and records each one. Every statement is idempotent
 * (IF NOT EXISTS), so two processes migrating at once, or a crash between a statement and its record,
 * are harmless. A recorded migration whose file changed since is an error.
 */
export async function applyMigrations(client: ClickHouseClient, mode: DdlMode, opts: RenderOptions): Promise<AppliedMigration[]> {
  try {
    for (const s of renderBootstrap(mode, opts)) await client.command({ query: s });
    const rs = await client.query({
      query: `SELECT version, any(checksum) AS checksum FROM ${opts.database}.${MIGRATIONS_TABLE} GROUP BY version`,
      format: 'JSONEachRow',
    });
    const applied = new Map<number, string>();
    for (const r of await rs.json<{ version: number | string; checksum: string }>()) applied.set(Number(r.version), r.checksum);
    const done: AppliedMigration[] = [];
    for (const m of renderMigrations(mode, opts)) {
      const had = applied.get(m.version);
      if (had !== undefined) {
        if (had !== m.checksum) {
          throw new StoreError(
            STORE_ERROR_CODES.MIGRATION,
            `migration ${m.version}_${m.name} changed after it was applied (checksum ${had.slice(0, 12)} -> ${m.checksum.slice(0, 12)}); add a new migration instead`,
          );
        }
        continue;
      }
      for (const s of m.statements) await client.command({ query: s });
      for (const s of m.backfill) await client.command({ query: s });
      await client.insert({
        table: `${opts.database}.${MIGRATIONS_TABLE}`,
        values: [{ version: m.version, name: m.name, checksum: m.checksum, applied_at: Date.now() }],
        format: 'JSONEachRow',
      });
      done.push({ version: m.version, name: m.name });
    }
    return done;
  } catch (e) {
    if (e instanceof StoreError) throw e;
    throw new StoreError(STORE_ERROR_CODES.MIGRATION, `applying migrations failed: ${(e as Error).message}`, { cause: e });
  }
}

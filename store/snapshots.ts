import { createHash, randomUUID } from 'node:crypto';
import type { ClickHouseClient } from '@clickhouse/client';
import { COMPONENTS } from '../rules/index.ts';
import { STORE_ERROR_CODES, StoreError } from './errors.ts';
import { parseStreamKey, STREAM_KEY_SQL, streamKey } from './heads.ts';
import { addInto, queryRows, toTotals, type AggRow, type RunDayTotals } from './queries.ts';
import { componentColumn } from './rows.ts';
import { checkTime } from './scope.ts';

/**
 * Which cost_events rows a set of totals includes: per tenant stream, every row whose chain seq is at most
 * the stream's entry (a stream without an entry: none of its rows).
 *
 * The chain seq is the log's insertion order: the writer gives each stream's rows consecutive seqs in the
 * order it commits them, one flush at a time, so a row committed later always has a higher seq than every row
 * committed before it, whatever its event time. A late event (an old finalized_at) inserted after a snapshot is
 * therefore past the watermark and counted once, by the read since it; a replay of an event the snapshot holds
 * is past it too, and is recognised by its key (tenant, event_time, event_id: the key FINAL collapses on) among
 * the rows up to the watermark. Each stream has one chain and one writer: every writer process appends on a
 * stream of its own of each tenant (store/heads.ts; keyed here by the stream key), so several writer processes
 * each advance their own streams' seqs, and a stream's seq is visible only once every lower one of it is.
 *
 * Two things can change a stream's rows up to the watermark after the fact: a background merge collapsing the
 * older copy of a key stored twice into its newer copy (ReplacingMergeTree keeps the last inserted, so the key
 * is then seen only past the watermark), and a row inserted under the watermark (a second writer on the
 * stream). Both change the number of rows stored up to it, which a snapshot records per stream (`streamRows`):
 * a start counts them again and reads a stream whose count moved from its beginning.
 */
export type Watermark = ReadonlyMap<string, number>;

/** The log's totals per (tenant, run, UTC day) over exactly the rows a watermark names. */
export interface ControlSnapshot {
  id: string;
  /** When it was written, epoch ms. */
  takenAt: number;
  watermark: Watermark;
  /** Per stream, the rows stored up to the watermark (copies of a key each counted). */
  streamRows: Watermark;
  groups: RunDayTotals[];
}

/** What the log holds past a watermark, as totals, and how far that read reached. */
export interface LogSince {
  /** Per (tenant, run, UTC day), each event key once, none the rows up to the watermark already hold. */
  groups: RunDayTotals[];
  /** The watermark these groups and the ones before them cover: per stream, the highest seq read (or the old one). */
  watermark: Map<string, number>;
  /** Per stream, the rows read (as stored: copies and replays of held keys included). */
  streamRows: Map<string, number>;
}

/** A stored snapshot that did not check out (rows missing or changed), newest first. */
export interface InvalidSnapshot {
  id: string;
  takenAt: number;
  reason: string;
}

function watermarkParams(prefix: string, w: Watermark): Record<string, unknown> {
  const tenants = [...w.keys()];
  return { [`${prefix}t`]: tenants, [`${prefix}s`]: tenants.map((t) => w.get(t) as number) };
}

function checkWatermark(w: Watermark, field: string): void {
  for (const [t, s] of w) {
    if (typeof t !== 'string' || !Number.isSafeInteger(s) || s < 0) throw new StoreError(STORE_ERROR_CODES.INVALID, `${field} must map stream keys to seqs (non-negative integers)`, { field });
  }
}

/** One group as the checksum reads it: the stored values, components in their stored (sorted) order. */
function groupLine(g: RunDayTotals): string {
  const comps = Object.entries(g.components)
    .filter(([, v]) => v !== 0)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  return `${g.tenantId}\t${g.runId}\t${g.day}\t${comps}\t${g.totalMicros}\t${g.tasks}\t${g.succeeded}\t${g.failed}\t${g.retried}`;
}

function byGroupKey(a: RunDayTotals, b: RunDayTotals): number {
  const ka = `${a.tenantId}\u0000${a.runId}\u0000${a.day}`;
  const kb = `${b.tenantId}\u0000${b.runId}\u0000${b.day}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/** sha256 over the watermark and the groups (sorted), as stored: what a snapshot's header vouches for. */
export function snapshotChecksum(watermark: Watermark, streamRows: Watermark, groups: readonly RunDayTotals[]): string {
  const h = createHash('sha256');
  for (const [t, s] of [...watermark].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) h.update(`w\t${t}\t${s}\n`);
  for (const [t, n] of [...streamRows].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) h.update(`n\t${t}\t${n}\n`);
  for (const g of [...groups].sort(byGroupKey)) h.update(`${groupLine(g)}\n`);
  return h.digest('hex');
}

/**
 * The snapshots of the control state's spend (control_snapshots, control_snapshot_groups) and the reads of
 * cost_events by watermark. No FINAL: each event key is counted once by grouping on it, so a read's cost is that
 * of the rows it selects, whatever the state of the table's parts.
 */
export class ControlSnapshotTable {
  readonly #client: ClickHouseClient;
  readonly #db: string;

  constructor(client: ClickHouseClient, database: string) {
    this.#client = client;
    this.#db = database;
  }

  #rows<T>(query: string, params: Record<string, unknown>): Promise<T[]> {
    return queryRows<T>(this.#client, query, params);
  }

  /**
   * The recorded chain heads of cost_events as a watermark: a head is recorded after the insert of the rows up
   * to it, so every row it names is committed. (Rows past a head, from a writer that stopped between the two,
   * are left to the next read since.)
   */
  async recordedWatermark(): Promise<Map<string, number>> {
    const rows = await this.#rows<{ t: string; s: number | string }>(`SELECT tenant_id AS t, max(seq) AS s FROM ${this.#db}.chain_heads WHERE log = 'cost_events' GROUP BY t`, {});
    return new Map(rows.map((r) => [String(r.t), Number(r.s)]));
  }

  /**
   * Totals per (tenant, run, UTC day) of the rows past `after` (and, with `upTo`, at most `upTo`), every event
   * key (tenant, event_time, event_id) once, and none of the keys the rows up to `after` hold: what a snapshot
   * at `after` lacks of the log. With an empty `after`, the whole log up to `upTo`.
   */
  async runDayTotalsSince(after: Watermark, upTo?: Watermark): Promise<LogSince> {
    checkWatermark(after, 'after');
    if (upTo) checkWatermark(upTo, 'upTo');
    const t = `${this.#db}.cost_events`;
    const lo = `transform(${STREAM_KEY_SQL}, {at:Array(String)}, {as:Array(UInt64)}, toUInt64(0))`;
    const hi = upTo ? `\n    AND seq <= transform(${STREAM_KEY_SQL}, {ut:Array(String)}, {us:Array(UInt64)}, toUInt64(0))` : '';
    const cols = COMPONENTS.map((k) => `any(${componentColumn(k)}) AS c_${k}`).join(', ');
    // A key the rows up to `after` hold: only looked up for the keys read here (the sorting key's index).
    const dup =
      after.size === 0
        ? '0'
        : `(t, et, e) IN (SELECT tenant_id, event_time, event_id FROM ${t}
      WHERE seq <= ${lo} AND (tenant_id, event_time, event_id) IN (SELECT t, et, e FROM since))`;
    const sums = COMPONENTS.map((k) => `sumIf(c_${k}, NOT dup) AS ${k}`).join(', ');
    // One scan: the totals and, per writer stream, how far its rows read here reach and how many they are
    // (each key's (stream, seq) pairs, few: only the rows past the watermark), so what the totals include and
    // the watermark they are reported at are the same rows.
    const rows = await this.#rows<AggRow & { t: string; r: string; d: string; ss: Array<[number | string, number | string]> }>(
      `WITH since AS (
  SELECT tenant_id AS t, event_time AS et, event_id AS e, any(run_id) AS r, any(status) AS st, ${cols}, any(total_micros) AS tm,
    groupArray((stream, seq)) AS ss
  FROM ${t}
  WHERE 1 = 1 /* all tenants, explicitly; bounded by the watermark, not by time: a late event is past it */
    AND seq > ${lo}${hi}
  GROUP BY t, et, e
)
SELECT t, r, toString(toDate(et)) AS d, ${sums}, sumIf(tm, NOT dup) AS total, countIf(NOT dup) AS tasks,
  countIf(NOT dup AND st = 'success') AS succeeded, countIf(NOT dup AND st != 'success') AS failed, countIf(NOT dup AND st = 'retried') AS retried,
  groupArrayArray(ss) AS ss
FROM (SELECT *, ${dup} AS dup FROM since)
GROUP BY t, r, d
SETTINGS optimize_aggregation_in_order = 1`,
      { ...watermarkParams('a', after), ...(upTo ? watermarkParams('u', upTo) : {}) },
    );
    const watermark = new Map(after);
    const streamRows = new Map<string, number>();
    const groups: RunDayTotals[] = [];
    for (const r of rows) {
      const tenantId = String(r.t);
      for (const [stream, seq] of r.ss) {
        const k = streamKey(tenantId, Number(stream));
        if (Number(seq) > (watermark.get(k) ?? 0)) watermark.set(k, Number(seq));
        streamRows.set(k, (streamRows.get(k) ?? 0) + 1);
      }
      const totals = toTotals(r);
      // A group of replays only: nothing to add, but its seqs are read.
      if (totals.tasks > 0) groups.push({ tenantId, runId: String(r.r), day: String(r.d), ...totals });
    }
    return { groups, watermark, streamRows };
  }

  /** Per stream, the rows stored up to the watermark (copies counted): one narrow scan of (tenant_id, stream, seq), no merge. */
  async streamRowsUpTo(upTo: Watermark): Promise<Map<string, number>> {
    checkWatermark(upTo, 'upTo');
    if (upTo.size === 0) return new Map();
    const rows = await this.#rows<{ t: string; n: number | string }>(
      `SELECT ${STREAM_KEY_SQL} AS t, count() AS n FROM ${this.#db}.cost_events
WHERE tenant_id IN {tenants:Array(String)} AND seq <= transform(${STREAM_KEY_SQL}, {ut:Array(String)}, {us:Array(UInt64)}, toUInt64(0))
GROUP BY t`,
      { ...watermarkParams('u', upTo), tenants: [...new Set([...upTo.keys()].map((k) => parseStreamKey(k).tenantId))] },
    );
    return new Map(rows.map((r) => [String(r.t), Number(r.n)]));
  }

  /** Writes a snapshot: its groups first, then the header that vouches for them (count and sha256). */
  async write(s: { watermark: Watermark; streamRows: Watermark; groups: readonly RunDayTotals[]; takenAt: number }): Promise<ControlSnapshot> {
    checkWatermark(s.watermark, 'watermark');
    checkWatermark(s.streamRows, 'streamRows');
    const takenAt = checkTime(s.takenAt, 'takenAt');
    const id = randomUUID();
    const groups = [...s.groups];
    const values = groups.map((g) => ({
      snapshot_id: id,
      taken_at: takenAt,
      tenant_id: g.tenantId,
      run_id: g.runId,
      day: g.day,
      components: Object.fromEntries(Object.entries(g.components).filter(([, v]) => v !== 0)),
      total_micros: g.totalMicros,
      tasks: g.tasks,
      succeeded: g.succeeded,
      failed: g.failed,
      retried: g.retried,
    }));
    try {
      // Every insert names its own token: the embedded connection keeps settings of earlier statements.
      for (let off = 0; off < values.length; off += 100_000) {
        await this.#client.insert({ table: `${this.#db}.control_snapshot_groups`, values: values.slice(off, off + 100_000), format: 'JSONEachRow', clickhouse_settings: { insert_deduplication_token: `${id}:${off}` } });
      }
      await this.#client.insert({
        table: `${this.#db}.control_snapshots`,
        values: [{ snapshot_id: id, taken_at: takenAt, watermark: Object.fromEntries(s.watermark), stream_rows: Object.fromEntries(s.streamRows), groups: groups.length, checksum: snapshotChecksum(s.watermark, s.streamRows, groups) }],
        format: 'JSONEachRow',
        clickhouse_settings: { insert_deduplication_token: id },
      });
    } catch (e) {
      throw new StoreError(STORE_ERROR_CODES.WRITE_FAILED, `writing a control snapshot failed: ${(e as Error).message}`, { cause: e });
    }
    return { id, takenAt, watermark: new Map(s.watermark), streamRows: new Map(s.streamRows), groups };
  }

  /**
   * The newest snapshot whose groups check out against its header (count and sha256), looking at up to
   * `candidates` of the newest; the ones that did not, newest first. Undefined when none does.
   */
  async latest(candidates = 3): Promise<{ snapshot: ControlSnapshot | undefined; invalid: InvalidSnapshot[] }> {
    const heads = await this.#rows<{ id: string; at: number | string; w: Record<string, number | string>; sr: Record<string, number | string>; n: number | string; c: string }>(
      `SELECT snapshot_id AS id, toUnixTimestamp64Milli(taken_at) AS at, watermark AS w, stream_rows AS sr, groups AS n, checksum AS c
FROM ${this.#db}.control_snapshots ORDER BY taken_at DESC, snapshot_id LIMIT {k:UInt32}`,
      { k: candidates },
    );
    const invalid: InvalidSnapshot[] = [];
    for (const h of heads) {
      const takenAt = Number(h.at);
      const watermark = new Map(Object.entries(h.w).map(([t, s]) => [t, Number(s)]));
      const streamRows = new Map(Object.entries(h.sr).map(([t, n]) => [t, Number(n)]));
      const rows = await this.#rows<{ t: string; r: string; d: string; c: Record<string, number | string>; total: number | string; tasks: number | string; succeeded: number | string; failed: number | string; retried: number | string }>(
        `SELECT tenant_id AS t, run_id AS r, toString(day) AS d, components AS c, total_micros AS total, tasks, succeeded, failed, retried
FROM ${this.#db}.control_snapshot_groups WHERE snapshot_id = {id:String}`,
        { id: h.id },
      );
      let groups: RunDayTotals[];
      try {
        groups = rows.map((r) => ({ tenantId: String(r.t), runId: String(r.r), day: String(r.d), ...toTotals({ ...r.c, total: r.total, tasks: r.tasks, succeeded: r.succeeded, failed: r.failed, retried: r.retried } as AggRow) }));
        // A component the snapshot does not know (one this version does not have) would be lost: not this one.
        for (const r of rows) for (const k of Object.keys(r.c)) if (!(COMPONENTS as readonly string[]).includes(k)) throw new Error(`unknown component ${k}`);
      } catch (e) {
        invalid.push({ id: h.id, takenAt, reason: `unreadable: ${(e as Error).message}` });
        continue;
      }
      if (groups.length !== Number(h.n)) {
        invalid.push({ id: h.id, takenAt, reason: `${groups.length} of ${Number(h.n)} groups` });
        continue;
      }
      if (snapshotChecksum(watermark, streamRows, groups) !== h.c) {
        invalid.push({ id: h.id, takenAt, reason: 'checksum mismatch: the snapshot was changed' });
        continue;
      }
      return { snapshot: { id: h.id, takenAt, watermark, streamRows, groups }, invalid };
    }
    return { snapshot: undefined, invalid };
  }
}

/** Adds groups into a map keyed by (tenant, run, day) (a new group is copied, never shared). */
export function addRunDays(into: Map<string, RunDayTotals>, groups: readonly RunDayTotals[]): void {
  for (const g of groups) {
    const k = `${g.tenantId}\u0000${g.runId}\u0000${g.day}`;
    const cur = into.get(k);
    if (!cur) {
      into.set(k, { ...g, components: { ...g.components } });
      continue;
    }
    addInto(cur, g);
  }
}

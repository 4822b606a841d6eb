import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClickHouseClient } from '@clickhouse/client';
import { byComponent, COMPONENT_SPECS, COMPONENTS } from '../rules/index.ts';
import { ATTRIBUTION_COLUMNS, ATTRIBUTION_SINCE, CANONICAL_VERSION, componentColumn, INSERT_COLUMNS, quantityColumn, type LogScope, type Store, type Totals } from '../store/index.ts';
import { median, childMain, runChild, type Benchmark, type BenchRow, type BenchSize } from './harness.ts';

/**
 * Day / week / run totals over 10M events in the embedded store: the store's own queries (tenant filter, time
 * bound, FINAL so an event_id that reached the table twice counts once) for a tenant scope and a run scope,
 * against the same aggregate over the same rows with no FINAL (a plain scan that double counts replays),
 * in the same child process. Plus RSS during the totals.
 *
 * The rows are generated in ClickHouse SQL (`INSERT ... SELECT ... FROM numbers(N)`): the JS batch writer
 * (exactly-once checks, hash chain) would take minutes at 10M. They have every column the store writes, with
 * consistent inputs and components; the chain columns are 64-hex links (each row's prev_hash is its
 * predecessor's hash) but not the store's canonical sha256, so `verify` is not part of this benchmark.
 * About 1% of the events are inserted a second time in a later part (same tenant, event_id, event_time,
 * later ingest_time: a replayed batch), so the exactly-once path is exercised.
 *
 * The measurement runs in a child process of its own: the embedded engine binds one data directory per
 * process, and the child's RSS is the totals' alone.
 */
type Phase = 'unmerged' | 'merged';

interface PhaseState {
  /** Active parts of cost_events. */
  parts: number;
  /** Rows of the measured tenant stored twice (rows - distinct event_ids, no FINAL). */
  replayed: number;
}

interface QueryTiming {
  phase: Phase;
  scope: 'tenant' | 'run';
  query: string;
  storeMs: number;
  plainMs: number;
}

interface ChildResult {
  events: number;
  duplicates: number;
  tenants: number;
  runs: number;
  tenantRows: number;
  runRows: number;
  populateSeconds: number;
  /** Phase 1: the log as the populate left it. */
  unmerged: PhaseState;
  /** Phase 2: after the background merges ran (bounded wait). */
  merged: PhaseState;
  mergeWaitSeconds: number;
  repeats: number;
  timings: QueryTiming[];
  rssAfterOpenMb: number;
  /** Per state: RSS right before its timed totals, and the peak during them. */
  rss: Record<Phase, { beforeMb: number; peakMb: number }>;
  mergesStopped: boolean;
  peakSource: 'VmHWM after reset' | 'maxRSS of the process';
}

const SIZES: Record<BenchSize, { events: number; runEvents: number; repeats: number }> = {
  full: { events: 10_000_000, runEvents: 1_000, repeats: 5 },
  tiny: { events: 20_000, runEvents: 100, repeats: 2 },
};
const TENANTS = 4;
const DAY_MS = 86_400_000;
const SPAN_MS = 30 * DAY_MS;
/** A Wednesday, 20:00 UTC: "now" for every query; the events cover the 30 days before it. */
const NOW = Date.UTC(2025, 0, 15, 20, 0, 0);
const WEEKS = 5;
/** How long phase 2 waits for the background merges to finish. */
const MERGE_WAIT_MS: Record<BenchSize, number> = { full: 45_000, tiny: 3_000 };

const COLUMNS = INSERT_COLUMNS;
/** Components added after the first canonical version: a small non-zero amount each (and a quantity when metered). */
/** Columns added after the first canonical version, in insert order: later components, then (version 3) the attribution ids, empty. */
const LATER_SQL = Array.from({ length: CANONICAL_VERSION - 1 }, (_, i) => i + 2)
  .map(
    (v) =>
      COMPONENT_SPECS.filter((c) => c.since === v)
        .map((c) => `  intDiv(h, ${19 + COMPONENTS.indexOf(c.key)}) % 90000 + 1 AS ${componentColumn(c.key)},\n${'metered' in c ? `  '1' AS ${quantityColumn(c.key)},\n` : ''}`)
        .join('') + (v === ATTRIBUTION_SINCE ? ATTRIBUTION_COLUMNS.map((a) => `  '' AS ${a},\n`).join('') : ''),
  )
  .join('');

/**
 * Event n (0 <= n < N): tenant n % 4, in time order over the 30 days before NOW, runs of `runEvents`
 * consecutive events of a tenant. Priced like the collector would: RLI $0.10-0.15, gas = gas_used x 30 gwei x
 * $2500/ETH = gas_used x 75 micros, compute = task_hours x $1.60, storage $300 GB x $0.23 / 30 / 200 tasks,
 * LLM gpt-4o ($2.50 / $10 per Mtok), later components (bandwidth) a small amount. Every component non-zero; total = their sum.
 */
function populateSql(db: string, where: string): string {
  return `INSERT INTO ${db}.cost_events (${COLUMNS.join(', ')})
SELECT
  concat('bench-t', toString(n % ${TENANTS})) AS tenant_id,
  intDiv(n, ${TENANTS}) + 1 AS seq,
  concat('evt-', toString(n)) AS event_id,
  concat('run-', toString(n % ${TENANTS}), '-', toString(intDiv(n, ${TENANTS} * {runEvents:UInt64}))) AS run_id,
  concat('task-', toString(n)) AS task_id,
  ['eval', 'train', 'label', 'scrape'][intDiv(n, ${TENANTS}) % 4 + 1] AS task_type,
  'gpt-4o' AS model,
  'gpu-a10' AS environment,
  multiIf(h % 20 = 0, 'failed', h % 50 = 1, 'retried', 'success') AS status,
  fromUnixTimestamp64Milli(t, 'UTC') AS event_time,
  fromUnixTimestamp64Milli(t + 40 + toInt64(h % 200) + {ingestLag:Int64}, 'UTC') AS ingest_time,
  100000 + h % 50000 AS rli_micros,
  gas_used * 75 AS gas_micros,
  k * 16000 AS compute_micros,
  11500 AS storage_micros,
  intDiv(in_tok * 5, 2) + out_tok * 10 AS llm_micros,
  ${COMPONENTS.map(componentColumn).join(' + ')} AS total_micros,
  gas_used,
  '30' AS gas_price_gwei,
  '2500' AS native_usd,
  'receipt' AS gas_source,
  1 AS chain_id,
  concat('0x', link(n + {n:UInt64})) AS tx_hash,
  toString(k / 100) AS task_hours,
  '1.60' AS compute_hour_usd,
  '300' AS gb_stored,
  '0.23' AS storage_gb_month_usd,
  ['gpt-4o'] AS llm_models,
  [in_tok] AS llm_input_tokens,
  [out_tok] AS llm_output_tokens,
${LATER_SQL}  if(n < ${TENANTS}, repeat('0', 64), link(n - ${TENANTS})) AS prev_hash,
  link(n) AS hash,
  ${CANONICAL_VERSION} AS canonical_version
FROM
(
  SELECT
    number AS n,
    cityHash64(number) AS h,
    toInt64({now:Int64} - {span:Int64} + intDiv(number * {span:Int64}, {n:UInt64})) AS t,
    21000 + intDiv(h, 7) % 100000 AS gas_used,
    intDiv(h, 11) % 100 + 1 AS k,
    1000 + 2 * (intDiv(h, 13) % 2000) AS in_tok,
    200 + intDiv(h, 17) % 800 AS out_tok
  FROM numbers({n:UInt64})
)
WHERE ${where}`;
}

/** 64 hex characters from n (the chain columns' shape; not the store's canonical sha256). */
const LINK_FN = `CREATE FUNCTION IF NOT EXISTS link AS (x) -> lower(concat(leftPad(hex(cityHash64(x, 11)), 16, '0'), leftPad(hex(cityHash64(x, 12)), 16, '0'), leftPad(hex(cityHash64(x, 13)), 16, '0'), leftPad(hex(cityHash64(x, 14)), 16, '0')))`;

/**
 * Fills an embedded store's log with `n` generated events (4 tenants, runs of `runEvents` events, over the 30
 * days before `now`), in SQL: the restart benchmark's history. With `from`/`to`, only events n in [from, to)
 * of that history (each tenant's chain seqs grow with n: a later range is a later insert).
 */
export async function populateLog(client: ClickHouseClient, db: string, o: { n: number; runEvents: number; now: number; from?: number; to?: number }): Promise<void> {
  await client.command({ query: LINK_FN });
  const where = `n >= ${Math.trunc(o.from ?? 0)} AND n < ${Math.trunc(o.to ?? o.n)}`;
  await client.command({ query: populateSql(db, where), query_params: { n: o.n, now: o.now, span: SPAN_MS, runEvents: o.runEvents, ingestLag: 0 }, clickhouse_settings: { insert_deduplicate: 0 } });
}

/** The store's aggregate (store/queries.ts), for the plain-scan baseline. */
const AGG = `${COMPONENTS.map((k) => `sum(${componentColumn(k)}) AS ${k}`).join(', ')}, sum(total_micros) AS total, count() AS tasks,
  countIf(status = 'success') AS succeeded, countIf(status != 'success') AS failed, countIf(status = 'retried') AS retried`;

async function rows<T>(client: ClickHouseClient, query: string, params: Record<string, unknown>): Promise<T[]> {
  const rs = await client.query({ query, query_params: params, format: 'JSONEachRow' });
  return rs.json<T>();
}

/** The same aggregate as the store's query over the same rows and range, without FINAL. */
async function plain(client: ClickHouseClient, db: string, scope: { tenantId: string; runId?: string }, from: number, to: number, group?: string): Promise<unknown[]> {
  const where = scope.runId === undefined ? 'tenant_id = {tenant:String}' : 'tenant_id = {tenant:String} AND run_id = {run:String}';
  return rows(
    client,
    `SELECT ${group ? `${group} AS k, ` : ''}${AGG}
FROM ${db}.cost_events
WHERE ${where}
  AND event_time >= fromUnixTimestamp64Milli({from:Int64}, 'UTC')
  AND event_time < fromUnixTimestamp64Milli({to:Int64}, 'UTC')
${group ? 'GROUP BY k ORDER BY k' : ''}`,
    { tenant: scope.tenantId, ...(scope.runId === undefined ? {} : { run: scope.runId }), from, to },
  );
}

async function partCount(client: ClickHouseClient, db: string): Promise<number> {
  const [r] = await rows<{ c: number | string }>(client, `SELECT count() AS c FROM system.parts WHERE database = {db:String} AND table = 'cost_events' AND active`, { db });
  return Number(r?.c ?? 0);
}

function vmHwmMb(): number | undefined {
  const m = /VmHWM:\s+(\d+)\s+kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : undefined;
}

/** Resets the process's peak RSS (Linux: VmHWM := VmRSS). False where that is not possible. */
function resetPeakRss(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return vmHwmMb() !== undefined;
  } catch {
    return false;
  }
}

function flat(t: Totals): number[] {
  const c = t.components;
  return [...COMPONENTS.map((k) => c[k]), t.totalMicros, t.tasks, t.succeeded, t.failed, t.retried];
}

function sameTotals(a: Totals, b: Totals): boolean {
  return flat(a).join() === flat(b).join();
}

async function child(size: BenchSize): Promise<ChildResult> {
  const { emptyTotals, openStore, startOfUtcDay } = await import('../store/index.ts');
  const { events: n, runEvents, repeats } = SIZES[size];
  const dir = mkdtempSync(join(tmpdir(), 'forge-totals-bench-'));
  const store: Store = await openStore({ dataDir: dir });
  const client = store.client;
  const db = store.database;
  try {
    if (global.gc) global.gc();
    const rssAfterOpenMb = process.memoryUsage().rss / 2 ** 20;
    const params = { n, now: NOW, span: SPAN_MS, runEvents };
    const p0 = performance.now();
    await client.command({ query: LINK_FN });
    // insert_deduplicate 0: the replay below must reach the table as a second part, as a real replay would.
    const settings = { insert_deduplicate: 0 as const };
    await client.command({ query: populateSql(db, '1'), query_params: { ...params, ingestLag: 0 }, clickhouse_settings: settings });
    // ~1% of the events again (every tenant: 101 is prime to the tenant count), five minutes later: a replayed batch in a part of its own.
    await client.command({ query: populateSql(db, 'n % 101 = 7'), query_params: { ...params, ingestLag: 300_000 }, clickhouse_settings: settings });
    const populateSeconds = (performance.now() - p0) / 1000;
    // Freeze the parts for the measurement: every repetition reads the same log (unmerged parts, replays not
    // yet collapsed, as a live log has), and no background merge competes for the two cores.
    let mergesStopped = true;
    try {
      await client.command({ query: `SYSTEM STOP MERGES ${db}.cost_events` });
    } catch {
      mergesStopped = false;
    }
    const duplicates = Math.floor((n - 8) / 101) + 1;

    const tenant = { tenantId: 'bench-t0' };
    // A run of tenant 0 that ended today: the second-to-last one of the log.
    const runIdx = Math.floor((n - 1) / (TENANTS * runEvents)) - 1;
    const run = { tenantId: 'bench-t0', runId: `run-0-${runIdx}` };
    const tenantRows = Math.ceil(n / TENANTS);
    const replayedRows = async (): Promise<number> => {
      const [c] = await rows<{ c: number | string }>(
        client,
        `SELECT count() - uniqExact(event_id) AS c FROM ${db}.cost_events WHERE tenant_id = {tenant:String} AND event_time < fromUnixTimestamp64Milli({to:Int64}, 'UTC')`,
        { tenant: tenant.tenantId, to: NOW + 1 },
      );
      return Number(c?.c ?? 0);
    };
    const replayedAfterPopulate = await replayedRows();

    // The figures must be right before they are timed: the store against a direct sum over distinct event_ids.
    const check = async (scope: { tenantId: string; runId?: string }, expectedTasks: number): Promise<void> => {
      const got = await store.cumulativeTotal(scope, NOW);
      const where = scope.runId === undefined ? 'tenant_id = {tenant:String}' : 'tenant_id = {tenant:String} AND run_id = {run:String}';
      const [d] = await rows<Record<string, number | string>>(
        client,
        `SELECT sum(t) AS total, ${COMPONENTS.map((k) => `sum(c_${k}) AS ${k}`).join(', ')}, count() AS tasks FROM (
  SELECT event_id, any(total_micros) AS t, ${COMPONENTS.map((k) => `any(${componentColumn(k)}) AS c_${k}`).join(', ')}
  FROM ${db}.cost_events WHERE ${where} AND event_time < fromUnixTimestamp64Milli({to:Int64}, 'UTC') GROUP BY event_id)`,
        { tenant: scope.tenantId, ...(scope.runId === undefined ? {} : { run: scope.runId }), to: NOW + 1 },
      );
      const direct = {
        totalMicros: Number(d?.total),
        components: byComponent((k) => Number(d?.[k])),
        tasks: Number(d?.tasks),
      };
      const mine = { totalMicros: got.totalMicros, components: got.components, tasks: got.tasks };
      if (JSON.stringify(mine) !== JSON.stringify(direct) || got.tasks !== expectedTasks || got.totalMicros <= 0) {
        throw new Error(`totals are wrong for ${JSON.stringify(scope)}: store ${JSON.stringify(mine)}, distinct event_ids ${JSON.stringify(direct)}, expected ${expectedTasks} tasks`);
      }
      for (const [c, v] of Object.entries(got.components)) if (v <= 0) throw new Error(`component ${c} is ${v} for ${JSON.stringify(scope)}`);
    };
    await check(tenant, tenantRows);
    await check(run, runEvents);

    const today = startOfUtcDay(NOW);
    const dow = (new Date(today).getUTCDay() + 6) % 7;
    const monday = today - dow * DAY_MS;
    type Q = { query: string; store: (s: LogScope) => Promise<unknown>; plain: (s: { tenantId: string; runId?: string }) => Promise<unknown> };
    const queries: Q[] = [
      { query: 'dayTotal', store: (s) => store.dayTotal(s, NOW), plain: (s) => plain(client, db, s, today, NOW + 1) },
      { query: 'rollingWeekTotal', store: (s) => store.rollingWeekTotal(s, NOW), plain: (s) => plain(client, db, s, today - 6 * DAY_MS, NOW + 1) },
      {
        query: `weeklyTotals (${WEEKS} ISO weeks)`,
        store: (s) => store.weeklyTotals(s, NOW, WEEKS),
        plain: (s) => plain(client, db, s, monday - (WEEKS - 1) * 7 * DAY_MS, monday + 7 * DAY_MS, 'toString(toMonday(event_time))'),
      },
      { query: 'cumulativeTotal (since 0)', store: (s) => store.cumulativeTotal(s, NOW), plain: (s) => plain(client, db, s, 0, NOW + 1) },
      {
        query: 'scopeRollup (8 days + week + cumulative)',
        store: (s) => store.scopeRollup(s, NOW),
        plain: async (s) => {
          await plain(client, db, s, today - 7 * DAY_MS, today + DAY_MS, 'toString(toDate(event_time))');
          return plain(client, db, s, 0, NOW + 1);
        },
      },
    ];
    const scopes = [
      { name: 'tenant' as const, scope: tenant },
      { name: 'run' as const, scope: run },
    ];

    // Warm-up (first reads of the parts, marks, JIT) outside both the timings and the memory figure.
    for (const { scope } of scopes) for (const q of queries) await Promise.all([q.store(scope), q.plain(scope)]);
    // A spot check that the rollup agrees with the other queries.
    const roll = await store.scopeRollup(tenant, NOW);
    if (!sameTotals(roll.run, await store.cumulativeTotal(tenant, NOW)) || !sameTotals(roll.days.at(-1) ?? emptyTotals(), await store.dayTotal(tenant, NOW))) {
      throw new Error('scopeRollup disagrees with cumulativeTotal / dayTotal');
    }

    const timeAll = async (phase: Phase): Promise<QueryTiming[]> => {
      const samples = new Map<string, { scope: 'tenant' | 'run'; query: string; store: number[]; plain: number[] }>();
      for (let rep = 0; rep < repeats; rep++) {
        for (const { name, scope } of scopes) {
          for (const q of queries) {
            const key = `${name}/${q.query}`;
            const s = samples.get(key) ?? { scope: name, query: q.query, store: [], plain: [] };
            samples.set(key, s);
            const runStore = async () => {
              const t0 = performance.now();
              await q.store(scope);
              s.store.push(performance.now() - t0);
            };
            const runPlain = async () => {
              const t0 = performance.now();
              await q.plain(scope);
              s.plain.push(performance.now() - t0);
            };
            // Alternate which goes first so neither always reads the other's warm cache.
            if (rep % 2 === 0) {
              await runStore();
              await runPlain();
            } else {
              await runPlain();
              await runStore();
            }
          }
        }
      }
      return [...samples.values()].map((s) => ({ phase, scope: s.scope, query: s.query, storeMs: median(s.store), plainMs: median(s.plain) }));
    };
    const peakSinceReset = (): number => (canReset ? vmHwmMb() : undefined) ?? process.resourceUsage().maxRSS / 1024;

    // Phase 1: the log as the populate left it (parts not merged, the replay part not collapsed).
    const unmerged: PhaseState = { parts: await partCount(client, db), replayed: replayedAfterPopulate };
    if (global.gc) global.gc();
    let canReset = resetPeakRss();
    const before1 = process.memoryUsage().rss / 2 ** 20;
    const timings = await timeAll('unmerged');
    const rss: ChildResult['rss'] = { unmerged: { beforeMb: before1, peakMb: peakSinceReset() }, merged: { beforeMb: 0, peakMb: 0 } };

    // Phase 2: after the background merges ran (bounded wait), frozen again.
    let mergeWaitSeconds = 0;
    if (mergesStopped) {
      await client.command({ query: `SYSTEM START MERGES ${db}.cost_events` });
      const w0 = performance.now();
      let idle = 0;
      while (performance.now() - w0 < MERGE_WAIT_MS[size] && idle < 2) {
        await new Promise((r) => setTimeout(r, 1000));
        const [m] = await rows<{ c: number | string }>(client, `SELECT count() AS c FROM system.merges WHERE database = {db:String} AND table = 'cost_events'`, { db });
        idle = Number(m?.c ?? 0) === 0 ? idle + 1 : 0;
      }
      mergeWaitSeconds = (performance.now() - w0) / 1000;
      await client.command({ query: `SYSTEM STOP MERGES ${db}.cost_events` });
    }
    const merged: PhaseState = { parts: await partCount(client, db), replayed: await replayedRows() };
    await check(tenant, tenantRows);
    for (const { scope } of scopes) for (const q of queries) await Promise.all([q.store(scope), q.plain(scope)]);
    if (global.gc) global.gc();
    canReset = resetPeakRss();
    const before2 = process.memoryUsage().rss / 2 ** 20;
    timings.push(...(await timeAll('merged')));
    rss.merged = { beforeMb: before2, peakMb: peakSinceReset() };
    if (mergesStopped) await client.command({ query: `SYSTEM START MERGES ${db}.cost_events` });
    return {
      events: n,
      duplicates,
      tenants: TENANTS,
      runs: Math.ceil(n / runEvents),
      tenantRows,
      runRows: runEvents,
      populateSeconds,
      unmerged,
      merged,
      mergeWaitSeconds,
      repeats,
      timings,
      rssAfterOpenMb,
      rss,
      mergesStopped,
      peakSource: canReset ? 'VmHWM after reset' : 'maxRSS of the process',
    };
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const bench: Benchmark = {
  name: 'totals',
  description:
    "Day / week / run totals over 10M events in the embedded store: the store's own queries (tenant filter, time bound, FINAL so a replayed event_id counts once) for a tenant scope and a run scope, median of repeated runs, with the log as populated and after background merges, vs the same aggregate over the same rows without FINAL (a plain scan, which double counts replays), in the same child process; and RSS during the totals.",
  async run(size) {
    const r = await runChild<ChildResult>(fileURLToPath(import.meta.url), '--totals-child', size);
    const scopeLabel = (s: 'tenant' | 'run'): string =>
      s === 'tenant' ? `tenant scope, ${r.tenantRows.toLocaleString('en-US')} events` : `run scope, ${r.runRows.toLocaleString('en-US')} events`;
    const phaseLabel = (ph: Phase): string => {
      const st = r[ph];
      return `${ph === 'unmerged' ? 'as populated' : 'after merges'} (${st.parts} parts)`;
    };
    const rows: BenchRow[] = r.timings.map((t) => ({
      metric: `${t.query}, ${scopeLabel(t.scope)}, ${phaseLabel(t.phase)}`,
      value: t.storeMs,
      unit: 'ms',
      baselineLabel: 'same aggregate and range, no FINAL (plain scan)',
      baseline: t.plainMs,
      ratio: t.storeMs / t.plainMs,
    }));
    for (const ph of ['unmerged', 'merged'] as const) {
      rows.push({
        metric: `peak RSS of the process during the timed totals, ${phaseLabel(ph)}`,
        value: r.rss[ph].peakMb,
        unit: 'MiB',
        baselineLabel: 'RSS right before them (store open, populated, checked, warmed up)',
        baseline: r.rss[ph].beforeMb,
        ratio: r.rss[ph].peakMb / r.rss[ph].beforeMb,
      });
    }
    return {
      rows,
      notes: [
        `${r.events.toLocaleString('en-US')} events generated in ClickHouse SQL (INSERT ... SELECT ... FROM numbers(N), every column of the store's rows, all five components non-zero; chain columns shaped like links but not the canonical sha256), ${r.tenants} tenants, ${r.runs.toLocaleString('en-US')} runs, over the 30 days before "now"; plus ${r.duplicates.toLocaleString('en-US')} events (1%) inserted again as a later part (a replayed batch). Populate took ${r.populateSeconds.toFixed(1)} s (not a store figure: the batch writer's rate is the ingest benchmark's).`,
        `Checked before timing: the store's cumulativeTotal of the tenant and of the run equals a direct sum over distinct event_ids (every component, task count). Medians of ${r.repeats} runs after a warm-up; store query and baseline alternate order each repetition.`,
        `Two states of the same log, each frozen (SYSTEM STOP MERGES) while timed so every repetition reads the same parts and no merge competes for the cores: as populated (${r.unmerged.parts} parts; the replay part spans all 30 days, the worst case for FINAL), then after letting background merges run for ${r.mergeWaitSeconds.toFixed(0)} s (${r.merged.parts} parts).${r.mergesStopped ? '' : ' (Merges could not be stopped here: they ran during the timings and the two states are the same.)'} Replayed rows of the measured tenant still stored twice, which the plain scan double counts and FINAL does not: ${r.unmerged.replayed.toLocaleString('en-US')}, then ${r.merged.replayed.toLocaleString('en-US')}.`,
        'With FINAL, the run-scope queries cannot use the run_id bloom filter alone: ClickHouse (use_skip_indexes_if_final_exact_mode) widens the selection to every granule whose primary-key range overlaps, and a replay part spanning the whole history overlaps all of the tenant, so a run total reads the whole tenant range until that part is merged in.',
        `Peak RSS: ${r.peakSource}; reset right before each state's timed totals, so it covers those totals only, not the populate or the merges. RSS with the store open before the populate: ${r.rssAfterOpenMb.toFixed(0)} MiB; the engine keeps much of what the populate allocated, which is most of the "before" figure.`,
      ],
    };
  },
};
export default bench;

childMain(import.meta.url, '--totals-child', child);

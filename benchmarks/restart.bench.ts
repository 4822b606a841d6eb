import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { childMain, median, runChild, type Benchmark, type BenchSize } from './harness.ts';
import { populateLog } from './totals.bench.ts';

/**
 * Restart: how long `forge start` takes to listen on a data directory with history, the guard's rebuild of
 * the control state included (spend from the newest control snapshot plus the log since it, control state
 * from guardrail_events, streaks and learned costs). Baseline, same run and directory: opening the store
 * alone (migrations checked), the floor of any start.
 *
 * The history is bulk-loaded in SQL with the table's merges switched off (a table setting, so it holds across
 * processes), then a previous run starts and stops on it (recording the control decisions the history implies,
 * and leaving its snapshot at the clean shutdown), then `since` more events arrive and the merges are switched
 * back on. The FIRST restart so finds the parts as loaded (unmerged: a FINAL over them merges on read) with the
 * engine's merges starting beside it, the worst case; it is reported apart from the median of the later ones.
 */
const SIZES: Record<BenchSize, { events: number; since: number; runEvents: number; repeats: number }> = {
  full: { events: 10_000_000, since: 20_000, runEvents: 1_000, repeats: 4 },
  tiny: { events: 20_000, since: 500, runEvents: 100, repeats: 2 },
};

interface ChildResult {
  events: number;
  since: number;
  scopes: number;
  populateSeconds: number;
  previousRunSeconds: number;
  decisionsRecorded: number;
  partsAtFirst: number;
  startMs: number[];
  openMs: number[];
  /** Per restart: how the spend was loaded and how many groups the read since the snapshot returned. */
  loads: Array<{ origin: string; groupsRead: number }>;
  /** Per restart: from listening until the background check (full recompute) and the fresh snapshot were done. */
  checkMs: number[];
}

async function child(size: BenchSize): Promise<ChildResult> {
  const { openStore } = await import('../store/index.ts');
  const { startForge } = await import('../cli/forge-process.ts');
  const { events, since, runEvents, repeats } = SIZES[size];
  const dir = mkdtempSync(join(tmpdir(), 'forge-restart-bench-'));
  const dataDir = join(dir, 'clickhouse');
  try {
    const now = Date.now();
    const p0 = performance.now();
    const env = { ...process.env, FORGE_DATA_DIR: dir, FORGE_PORT: '0', FORGE_LOG_LEVEL: 'silent' };
    let store = await openStore({ dataDir });
    const table = `${store.database}.cost_events`;
    // No part is ever big enough to merge until the setting is reset: the parts stay as the bulk load leaves them.
    await store.client.command({ query: `ALTER TABLE ${table} MODIFY SETTING max_bytes_to_merge_at_max_space_in_pool = 1, max_bytes_to_merge_at_min_space_in_pool = 1` });
    await populateLog(store.client, store.database, { n: events, runEvents, now, to: events - since });
    await store.close();
    const populateSeconds = (performance.now() - p0) / 1000;
    // The previous run: it sees the history (from no snapshot: the whole log, key by key), records the control
    // decisions it implies, and leaves a snapshot at its clean shutdown.
    const s0 = performance.now();
    const previous = await startForge({ env, log: () => {} });
    await previous.controlCheck;
    const decisionsRecorded = (await previous.store.guardrailEvents({ scope: { allTenants: true }, from: 0, to: now + 86_400_000, limit: 1_000_000 })).length;
    await previous.close();
    const previousRunSeconds = (performance.now() - s0) / 1000;
    // What arrived after it: the newest events of the history, a later insert (higher chain seqs). Merges on again.
    store = await openStore({ dataDir });
    await populateLog(store.client, store.database, { n: events, runEvents, now, from: events - since });
    await store.client.command({ query: `ALTER TABLE ${table} RESET SETTING max_bytes_to_merge_at_max_space_in_pool, max_bytes_to_merge_at_min_space_in_pool` });
    const rs = await store.client.query({ query: `SELECT count() AS c FROM system.parts WHERE database = {db:String} AND table = 'cost_events' AND active`, query_params: { db: store.database }, format: 'JSONEachRow' });
    const partsAtFirst = Number((await rs.json<{ c: string }>())[0]?.c ?? 0);
    await store.close();
    const startMs: number[] = [];
    const openMs: number[] = [];
    const checkMs: number[] = [];
    const loads: ChildResult['loads'] = [];
    let scopes = 0;
    for (let i = 0; i < repeats; i++) {
      const t0 = performance.now();
      const s = await openStore({ dataDir });
      openMs.push(performance.now() - t0);
      await s.close();
      const t1 = performance.now();
      const forge = await startForge({ env, log: () => {} });
      const t2 = performance.now();
      startMs.push(t2 - t1);
      loads.push({ origin: forge.spendLoaded.origin, groupsRead: forge.spendLoaded.groupsRead });
      scopes = forge.guardrail.knownScopes().length;
      await forge.controlCheck;
      checkMs.push(performance.now() - t2);
      await forge.close();
    }
    return { events, since, scopes, populateSeconds, previousRunSeconds, decisionsRecorded, partsAtFirst, startMs, openMs, loads, checkMs };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const bench: Benchmark = {
  name: 'restart',
  description:
    'Time until `forge start` listens on a data directory with history (10M events in 10,000 runs at full size), the rebuild of the control state included (the newest control snapshot plus the log since it), against opening the store alone on the same directory.',
  async run(size) {
    const r = await runChild<ChildResult>(fileURLToPath(import.meta.url), '--restart-child', size);
    const later = r.startMs.slice(1);
    const start = median(later);
    const open = median(r.openMs.slice(1));
    const first = r.startMs[0] ?? NaN;
    const firstOpen = r.openMs[0] ?? NaN;
    const s = (ms: number[]) => ms.map((m) => (m / 1000).toFixed(2)).join(', ');
    return {
      rows: [
        {
          metric: `the FIRST restart after the bulk load (${r.partsAtFirst} unmerged parts, merges starting beside it; a snapshot, then ${r.since.toLocaleString('en-US')} events since it)`,
          value: first / 1000,
          unit: 's',
          baselineLabel: 'opening the store alone',
          baseline: firstOpen / 1000,
          ratio: first / firstOpen,
          target: 'ready < 5 s at 10M events and 10,000 scopes',
        },
        {
          metric: `ready after a restart (median of the ${later.length} after the first), ${r.events.toLocaleString('en-US')} events, ${r.scopes.toLocaleString('en-US')} scopes`,
          value: start / 1000,
          unit: 's',
          baselineLabel: 'opening the store alone',
          baseline: open / 1000,
          ratio: start / open,
          target: 'ready < 5 s at 10M events and 10,000 scopes',
        },
      ],
      notes: [
        `History generated in SQL in ${r.populateSeconds.toFixed(1)} s (merges off); the previous run (no snapshot yet: the whole log key by key; it recorded the ${r.decisionsRecorded.toLocaleString('en-US')} guardrail events the history implies, one append each, and left a snapshot at its shutdown) took ${r.previousRunSeconds.toFixed(1)} s from start to closed.`,
        `Restarts (s): ${s(r.startMs)}; opening the store alone: ${s(r.openMs)}. Spend loaded from: ${r.loads.map((l) => `${l.origin} + ${l.groupsRead} groups read since`).join('; ')}.`,
        `In the background after listening, the full recompute that checks the loaded spend plus the fresh snapshot took (s): ${s(r.checkMs)}.`,
      ],
    };
  },
};
export default bench;

childMain(import.meta.url, '--restart-child', child);

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { childMain, median, runChild, type Benchmark, type BenchSize } from './harness.ts';
import { populateLog } from './totals.bench.ts';

/**
 * Restart: how long `forge start` takes to listen on a data directory with history, the guard's rebuild of
 * the control state from the two logs included (spend from cost_events in one grouped scan, control state
 * from guardrail_events, streaks and learned costs). Baseline, same run and directory: opening the store
 * alone (migrations checked), the floor of any start.
 */
const SIZES: Record<BenchSize, { events: number; runEvents: number; repeats: number }> = {
  full: { events: 10_000_000, runEvents: 1_000, repeats: 3 },
  tiny: { events: 20_000, runEvents: 100, repeats: 1 },
};

interface ChildResult {
  events: number;
  scopes: number;
  populateSeconds: number;
  startMs: number[];
  openMs: number[];
}

async function child(size: BenchSize): Promise<ChildResult> {
  const { openStore } = await import('../store/index.ts');
  const { startForge } = await import('../cli/forge-process.ts');
  const { events, runEvents, repeats } = SIZES[size];
  const dir = mkdtempSync(join(tmpdir(), 'forge-restart-bench-'));
  const dataDir = join(dir, 'clickhouse');
  try {
    const p0 = performance.now();
    const store = await openStore({ dataDir });
    await populateLog(store.client, store.database, { n: events, runEvents, now: Date.now() });
    await store.close();
    const populateSeconds = (performance.now() - p0) / 1000;
    const startMs: number[] = [];
    const openMs: number[] = [];
    let scopes = 0;
    for (let i = 0; i < repeats; i++) {
      const t0 = performance.now();
      const s = await openStore({ dataDir });
      openMs.push(performance.now() - t0);
      await s.close();
      const t1 = performance.now();
      const forge = await startForge({ env: { ...process.env, FORGE_DATA_DIR: dir, FORGE_PORT: '0', FORGE_LOG_LEVEL: 'silent' }, log: () => {} });
      startMs.push(performance.now() - t1);
      scopes = forge.guardrail.knownScopes().length;
      await forge.close();
    }
    return { events, scopes, populateSeconds, startMs, openMs };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const bench: Benchmark = {
  name: 'restart',
  description:
    'Time until `forge start` listens on a data directory with history (10M events in 10,000 runs at full size), the rebuild of the control state included, against opening the store alone on the same directory.',
  async run(size) {
    const r = await runChild<ChildResult>(fileURLToPath(import.meta.url), '--restart-child', size);
    const start = median(r.startMs);
    const open = median(r.openMs);
    return {
      rows: [
        {
          metric: `ready after a restart, ${r.events.toLocaleString('en-US')} events, ${r.scopes.toLocaleString('en-US')} scopes`,
          value: start / 1000,
          unit: 's',
          baselineLabel: 'opening the store alone',
          baseline: open / 1000,
          ratio: start / open,
          target: 'ready < 5 s at 10M events and 10,000 scopes',
        },
        {
          metric: 'the first restart right after the bulk load (10 unmerged parts: FINAL merges on read)',
          value: (r.startMs[0] ?? NaN) / 1000,
          unit: 's',
          baselineLabel: 'opening the store alone',
          baseline: (r.openMs[0] ?? NaN) / 1000,
          ratio: (r.startMs[0] ?? NaN) / (r.openMs[0] ?? NaN),
          target: 'ready < 5 s (missed while the parts are unmerged)',
        },
      ],
      notes: [`History generated in SQL in ${r.populateSeconds.toFixed(1)} s; medians of ${r.startMs.length} restarts (each: ${r.startMs.map((m) => (m / 1000).toFixed(2)).join(', ')} s).`],
    };
  },
};
export default bench;

childMain(import.meta.url, '--restart-child', child);

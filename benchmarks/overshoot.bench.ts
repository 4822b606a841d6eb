import { RedisLedger } from '../guard/index.ts';
import { microsToUsd, scopesOf, usdToMicros } from '../rules/index.ts';
import { startRedis } from '../test/helpers/redis.ts';
import type { Benchmark, BenchRow } from './harness.ts';
import { bandsYaml, startForgeProcess, type ForgeProcess } from '../test/helpers/forge-process.ts';

/**
 * The headline: dollars spent past a hard cap under concurrency. N runners run tasks of random cost until
 * refused, against two API processes sharing one Redis.
 * - Forge: reserve (POST /v1/admissions with the task's estimate), run, settle (POST .../settle).
 * - Baseline "check, then record after" (how popular LLM proxies enforce budgets): read the spend from the
 *   same shared counters, run if under the cap, record the cost after the task. Same Redis, same runners.
 */
const CAP_USD = 100;

function rng(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (x * 1664525 + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * How the runners' tasks behave:
 * - unbiased: the actual cost is the estimate;
 * - biased: the actual cost is 1.5 x the estimate. `topup`: a task that needs more than it reserved asks
 *   for the rest (POST .../extend) before spending it, and stops at its reservation when refused;
 *   `learned`: no top-ups, but the processes first learned the ratio from a few small tasks (warm start);
 *   `cold`: no top-ups, no history (what a runner that ignores both gets);
 * - crash: 30% of the admitted tasks' runners die before running them and never settle: their
 *   reservations hold the band until they expire (2 s here), then the others use it.
 */
type Mode = 'unbiased' | 'biased-topup' | 'biased-learned' | 'biased-cold' | 'crash';

async function post(p: ForgeProcess, path: string, body: unknown): Promise<Record<string, unknown>> {
  const r = await fetch(`${p.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${p.key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return (await r.json()) as Record<string, unknown>;
}

async function forgeRun(
  procs: ForgeProcess[],
  tenant: string,
  runners: number,
  seed: number,
  mode: Mode,
): Promise<{ spentMicros: number; tasks: number; maxReservedMicros: number; crashed: number; overruns: number }> {
  const rand = rng(seed);
  let spent = 0;
  let tasks = 0;
  let maxReserved = 0;
  let crashed = 0;
  let overruns = 0;
  const deadline = Date.now() + 20_000;
  await Promise.all(
    Array.from({ length: runners }, async (_, i) => {
      const p = procs[i % procs.length]!;
      for (let n = 0; ; n++) {
        const estimate = usdToMicros((0.5 + rand()).toFixed(6)); // $0.50 .. $1.50
        const actual = mode.startsWith('biased') ? Math.round(estimate * 1.5) : estimate;
        const d = await post(p, '/v1/admissions', { tenant_id: tenant, run_id: 'r1', task_type: 'eval', estimated_cost_usd: microsToUsd(estimate) });
        if (d.decision !== 'allow') {
          // Only reserved (tasks in flight or crashed runners' reservations): it frees up; ask again.
          if (typeof d.retry_after_ms === 'number' && d.retry_after_ms <= 1000 && Date.now() < deadline) {
            await sleep(20 + Math.floor(rand() * 30));
            continue;
          }
          return;
        }
        let reserved = usdToMicros(String(d.estimated_cost_usd));
        if (mode === 'crash' && rand() < 0.3) {
          crashed++;
          continue; // the runner died before running the task: nothing spent, nothing settled
        }
        await sleep(2 + Math.floor(rand() * 8)); // the task runs
        let cost = actual;
        if (mode === 'biased-topup' && actual > reserved) {
          const x = await post(p, `/v1/admissions/${String(d.reservation_id)}/extend`, { additional_usd: microsToUsd(actual - reserved) });
          if (x.decision === 'allow') reserved = actual;
          else cost = reserved; // refused at the cap: the task stops at what it holds
        }
        spent += cost;
        tasks++;
        maxReserved = Math.max(maxReserved, reserved);
        const st = await post(p, `/v1/admissions/${String(d.reservation_id)}/settle`, { actual_cost_usd: microsToUsd(cost), event_id: `${tenant}-${i}-${n}` });
        if (st.overrun === true) overruns++;
      }
    }),
  );
  return { spentMicros: spent, tasks, maxReservedMicros: maxReserved, crashed, overruns };
}

/** Warm start: each process learns the 1.5 ratio of the task type from a few small tasks. */
async function warmUp(procs: ForgeProcess[], tenant: string): Promise<void> {
  for (const [k, p] of procs.entries()) {
    for (let i = 0; i < 4; i++) {
      const d = await post(p, '/v1/admissions', { tenant_id: tenant, run_id: 'warm', task_type: 'eval', estimated_cost_usd: '0.01' });
      await post(p, `/v1/admissions/${String(d.reservation_id)}/settle`, { actual_cost_usd: '0.015', event_id: `${tenant}-warm-${k}-${i}` });
    }
  }
}

async function baselineRun(ledgers: RedisLedger[], tenant: string, runners: number, seed: number, factor = 1): Promise<{ spentMicros: number; tasks: number }> {
  const rand = rng(seed);
  const scopes = scopesOf(tenant, 'r1');
  const cap = usdToMicros(CAP_USD);
  let spent = 0;
  let tasks = 0;
  await Promise.all(
    Array.from({ length: runners }, async (_, i) => {
      const l = ledgers[i % ledgers.length]!;
      for (let n = 0; ; n++) {
        const cost = Math.round(usdToMicros((0.5 + rand()).toFixed(6)) * factor);
        const snap = await l.snapshot(scopes[1], Date.now()); // check ...
        if (snap.dayMicros >= cap) return;
        await sleep(2 + Math.floor(rand() * 8)); // the task runs
        spent += cost;
        tasks++;
        await l.record(`${tenant}-b-${i}-${n}`, scopes, cost, Date.now()); // ... then record after
      }
    }),
  );
  return { spentMicros: spent, tasks };
}

const CASES: Array<{ mode: Mode; label: string; factor: number; bound: (maxReservedMicros: number) => number; enforce: boolean }> = [
  { mode: 'unbiased', label: 'unbiased estimates', factor: 1, bound: (m) => m, enforce: true },
  { mode: 'biased-topup', label: 'actual = 1.5 x estimate, top-ups', factor: 1.5, bound: (m) => m, enforce: true },
  { mode: 'biased-learned', label: 'actual = 1.5 x estimate, learned ratio (warm)', factor: 1.5, bound: (m) => m, enforce: true },
  { mode: 'biased-cold', label: 'actual = 1.5 x estimate, cold start, no top-ups', factor: 1.5, bound: (m) => m, enforce: false },
  { mode: 'crash', label: '30% of runners crash before running (never settle)', factor: 1, bound: (m) => m, enforce: true },
];

const bench: Benchmark = {
  name: 'overshoot',
  description: `Dollars spent past a $${CAP_USD} day hard cap by N concurrent runners (tasks estimated at $0.50-$1.50, run 2-10 ms), two API processes sharing one Redis. Forge: reserve, then settle (with top-ups where the case says). Baseline: check, then record after, on the same Redis counters, with the same actual costs. Cases: unbiased estimates; actual = 1.5 x estimate with top-ups, with a learned ratio (warm) and with neither (cold); runners that crash before running.`,
  async run(size) {
    const levels = size === 'full' ? [1, 10, 100, 1000] : [10];
    const redis = await startRedis();
    const prefix = `bench${Date.now()}:`;
    const tenants = CASES.flatMap((c) => levels.map((n) => `${c.mode}-${n}`));
    const bands = bandsYaml(Object.fromEntries(tenants.map((t) => [t, { B_day_soft: CAP_USD * 0.8, B_day_hard: CAP_USD }])));
    const env = { FORGE_REDIS_URL: redis.url, FORGE_REDIS_PREFIX: prefix, FORGE_ROLLUP_INTERVAL_MS: '3600000' };
    const procs = [await startForgeProcess(env, bands), await startForgeProcess(env, bands)];
    // The crash case on its own pair, with 2 s reservations so that crashed runners' ones expire within
    // the run (a short TTL under load would also expire live tasks' reservations: that is its trade-off).
    const crashEnv = { ...env, FORGE_REDIS_PREFIX: `${prefix}crash:`, FORGE_RESERVATION_TTL_MS: '2000' };
    const crashProcs = [await startForgeProcess(crashEnv, bands), await startForgeProcess(crashEnv, bands)];
    const ledgers = [new RedisLedger({ url: redis.url, keyPrefix: `${prefix}baseline:` }), new RedisLedger({ url: redis.url, keyPrefix: `${prefix}baseline:` })];
    const rows: BenchRow[] = [];
    const notes: string[] = [];
    try {
      for (const c of CASES) {
        for (const n of levels) {
          const tenant = `${c.mode}-${n}`;
          if (c.mode === 'biased-learned') await warmUp(procs, tenant);
          const f = await forgeRun(c.mode === 'crash' ? crashProcs : procs, tenant, n, 1000 + n, c.mode);
          const b = await baselineRun(ledgers, `b-${tenant}`, n, 1000 + n, c.factor);
          const fOver = Math.max(0, f.spentMicros - usdToMicros(CAP_USD));
          const bOver = Math.max(0, b.spentMicros - usdToMicros(CAP_USD));
          const bound = c.bound(f.maxReservedMicros);
          rows.push({
            metric: `${c.label}, ${n} runner${n === 1 ? '' : 's'}: spent past the cap`,
            value: fOver / 1e6,
            unit: 'USD',
            baselineLabel: 'check, then record after',
            baseline: bOver / 1e6,
            ...(bOver > 0 ? { ratio: fOver / bOver } : {}),
            target: c.enforce ? `Forge <= one task's reserved bound ($${microsToUsd(bound)})` : 'reported (no bound without top-ups or history)',
          });
          notes.push(
            `${c.label}, ${n} runners: Forge ran ${f.tasks} tasks for $${microsToUsd(f.spentMicros)} (largest reservation $${microsToUsd(f.maxReservedMicros)}${f.crashed ? `, ${f.crashed} crashed runners' reservations expired` : ''}${f.overruns ? `, ${f.overruns} overruns flagged` : ''}); baseline ran ${b.tasks} tasks for $${microsToUsd(b.spentMicros)}.`,
          );
          if (c.enforce && fOver > bound) throw new Error(`Forge overshot the cap by $${microsToUsd(fOver)} (bound $${microsToUsd(bound)}) in case ${c.mode} with ${n} runners`);
          // The band is never left blocked: the run got to the cap (within one task) despite crashes.
          if (c.mode === 'crash' && f.spentMicros < usdToMicros(CAP_USD) - 2 * f.maxReservedMicros && size === 'full') throw new Error(`crash case: the band was left blocked at $${microsToUsd(f.spentMicros)}`);
        }
      }
    } finally {
      for (const l of ledgers) await l.close();
      for (const p of [...procs, ...crashProcs]) await p.stop();
      await redis.stop();
    }
    return { rows, notes };
  },
};
export default bench;

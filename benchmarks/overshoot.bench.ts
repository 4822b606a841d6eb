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

async function forgeRun(procs: ForgeProcess[], tenant: string, runners: number, seed: number): Promise<{ spentMicros: number; tasks: number; maxTaskMicros: number }> {
  const rand = rng(seed);
  let spent = 0;
  let tasks = 0;
  let maxTask = 0;
  await Promise.all(
    Array.from({ length: runners }, async (_, i) => {
      const p = procs[i % procs.length]!;
      const headers = { authorization: `Bearer ${p.key}`, 'content-type': 'application/json' };
      for (;;) {
        const cost = usdToMicros((0.5 + rand()).toFixed(6)); // $0.50 .. $1.50
        const r = await fetch(`${p.url}/v1/admissions`, { method: 'POST', headers, body: JSON.stringify({ tenant_id: tenant, run_id: 'r1', task_type: 'eval', estimated_cost_usd: microsToUsd(cost) }) });
        const d = (await r.json()) as { decision: string; reservation_id?: string };
        if (d.decision !== 'allow') return;
        await sleep(2 + Math.floor(rand() * 8)); // the task runs
        spent += cost;
        tasks++;
        maxTask = Math.max(maxTask, cost);
        await fetch(`${p.url}/v1/admissions/${d.reservation_id!}/settle`, { method: 'POST', headers, body: JSON.stringify({ actual_cost_usd: microsToUsd(cost), event_id: `${tenant}-${i}-${tasks}` }) });
      }
    }),
  );
  return { spentMicros: spent, tasks, maxTaskMicros: maxTask };
}

async function baselineRun(ledgers: RedisLedger[], tenant: string, runners: number, seed: number): Promise<{ spentMicros: number; tasks: number }> {
  const rand = rng(seed);
  const scopes = scopesOf(tenant, 'r1');
  const cap = usdToMicros(CAP_USD);
  let spent = 0;
  let tasks = 0;
  await Promise.all(
    Array.from({ length: runners }, async (_, i) => {
      const l = ledgers[i % ledgers.length]!;
      for (let n = 0; ; n++) {
        const cost = usdToMicros((0.5 + rand()).toFixed(6));
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

const bench: Benchmark = {
  name: 'overshoot',
  description: `Dollars spent past a $${CAP_USD} day hard cap by N concurrent runners (tasks cost $0.50-$1.50, run 2-10 ms), two API processes sharing one Redis. Forge: reserve, then settle. Baseline: check, then record after, on the same Redis counters.`,
  async run(size) {
    const levels = size === 'full' ? [1, 10, 100, 1000] : [1, 10];
    const redis = await startRedis();
    const prefix = `bench${Date.now()}:`;
    const bands = bandsYaml(Object.fromEntries(levels.map((n) => [`f${n}`, { B_day_soft: CAP_USD * 0.8, B_day_hard: CAP_USD }])));
    const env = { FORGE_REDIS_URL: redis.url, FORGE_REDIS_PREFIX: prefix, FORGE_ROLLUP_INTERVAL_MS: '3600000' };
    const procs = [await startForgeProcess(env, bands), await startForgeProcess(env, bands)];
    const ledgers = [new RedisLedger({ url: redis.url, keyPrefix: `${prefix}baseline:` }), new RedisLedger({ url: redis.url, keyPrefix: `${prefix}baseline:` })];
    const rows: BenchRow[] = [];
    const notes: string[] = [];
    try {
      for (const n of levels) {
        const f = await forgeRun(procs, `f${n}`, n, 1000 + n);
        const b = await baselineRun(ledgers, `b${n}`, n, 1000 + n);
        const fOver = Math.max(0, f.spentMicros - usdToMicros(CAP_USD));
        const bOver = Math.max(0, b.spentMicros - usdToMicros(CAP_USD));
        rows.push({
          metric: `${n} runner${n === 1 ? '' : 's'}: spent past the cap`,
          value: fOver / 1e6,
          unit: 'USD',
          baselineLabel: 'check, then record after',
          baseline: bOver / 1e6,
          ...(bOver > 0 ? { ratio: fOver / bOver } : {}),
          target: 'Forge <= one task estimate ($1.50)',
        });
        notes.push(`${n} runners: Forge ran ${f.tasks} tasks for $${microsToUsd(f.spentMicros)} (largest task $${microsToUsd(f.maxTaskMicros)}); baseline ran ${b.tasks} tasks for $${microsToUsd(b.spentMicros)}.`);
        if (fOver > 1_500_000) throw new Error(`Forge overshot the cap by $${microsToUsd(fOver)} with ${n} runners`);
      }
    } finally {
      for (const l of ledgers) await l.close();
      for (const p of procs) await p.stop();
      await redis.stop();
    }
    return { rows, notes };
  },
};
export default bench;

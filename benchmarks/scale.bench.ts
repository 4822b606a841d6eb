import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { microsToUsd, usdToMicros } from '../rules/index.ts';
import { bandsYaml, startForgeProcess, type ForgeProcess } from '../test/helpers/forge-process.ts';
import { startRedis } from '../test/helpers/redis.ts';
import type { Benchmark, BenchRow, BenchSize } from './harness.ts';

/**
 * How admissions scale with API processes on one Redis, and what one admission costs (the figures
 * docs/scale.md plans from):
 * - 1, 2 and 4 Forge API processes share one local Redis; autocannon (in this process) drives the task cycle
 *   POST /v1/admissions (reserve) then POST /v1/admissions/{id}/settle, with a bounded number of connections
 *   spread evenly over the processes. Admissions/s per configuration, and the ratio to 1 process.
 * - The 1-process figure is compared with GET /healthz on the same process (the HTTP floor: no auth, no Redis).
 * - CPU per admission: the API processes' CPU time (/proc/PID/stat) and Redis's (INFO cpu) over the run,
 *   so per-core rates do not depend on how the 2 cores of this machine were shared between them.
 * - Redis commands per admission (INFO commandstats before and after), reserve and settle included.
 * - Overshoot: with the most processes, a burst of concurrent admissions against a $100 day hard cap; spend
 *   admitted past the cap must stay within one task's estimate.
 */
interface Sized {
  procs: number[];
  seconds: number;
  warmSeconds: number;
  connections: number;
  burst: number;
}

const SIZES: Record<BenchSize, Sized> = {
  full: { procs: [1, 2, 4], seconds: 10, warmSeconds: 2, connections: 32, burst: 1000 },
  tiny: { procs: [1, 2], seconds: 1, warmSeconds: 0.5, connections: 4, burst: 60 },
};
const CAP_USD = 100;
const TICKS_PER_S = 100; // Linux USER_HZ: /proc/PID/stat counts CPU time in 1/100 s.

/** User + system CPU seconds of a process so far (Linux). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S;
}

interface RedisCounters {
  calls: Map<string, number>;
  cpu: number;
}

async function redisCounters(r: Redis): Promise<RedisCounters> {
  const calls = new Map<string, number>();
  for (const m of (await r.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(m[1]!, Number(m[2]));
  const cpu = await r.info('cpu');
  const num = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(cpu)?.[1] ?? 0);
  return { calls, cpu: num('used_cpu_sys') + num('used_cpu_user') };
}

function diffCalls(a: RedisCounters, b: RedisCounters): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, v] of b.calls) {
    const d = v - (a.calls.get(k) ?? 0);
    if (d > 0 && k !== 'info') out.set(k, d);
  }
  return out;
}

interface CycleResult {
  admissions: number;
  denied: number;
  seconds: number;
  non2xx: number;
  p99: number;
}

/** The reserve-then-settle cycle for `seconds` against every process at once, `connections` split evenly. */
async function cycle(procs: ForgeProcess[], tenant: string, seconds: number, connections: number): Promise<CycleResult> {
  let admissions = 0;
  let denied = 0;
  let n = 0;
  const t0 = performance.now();
  const results = await Promise.all(
    procs.map((p, i) =>
      autocannon({
        url: p.url,
        connections: Math.max(1, Math.round(connections / procs.length)),
        duration: seconds,
        headers: { authorization: `Bearer ${p.key}`, 'content-type': 'application/json' },
        requests: [
          {
            method: 'POST',
            path: '/v1/admissions',
            body: JSON.stringify({ tenant_id: tenant, run_id: `r${i}`, task_type: 'eval', estimated_cost_usd: '0.02' }),
            onResponse: (status, body, context) => {
              const d = status === 200 ? (JSON.parse(body) as { decision: string; reservation_id?: string }) : undefined;
              if (d?.decision === 'allow') admissions++;
              else denied++;
              (context as { id?: string }).id = d?.reservation_id;
            },
          },
          {
            method: 'POST',
            // No reservation (a refusal): start the pipeline again from the admission.
            setupRequest: (req, context) => {
              const id = (context as { id?: string }).id;
              if (!id) return undefined as unknown as autocannon.Request;
              return { ...req, path: `/v1/admissions/${id}/settle`, body: JSON.stringify({ actual_cost_usd: '0.01', event_id: `${tenant}-${i}-${n++}` }) };
            },
          },
        ],
      }),
    ),
  );
  return {
    admissions,
    denied,
    seconds: (performance.now() - t0) / 1000,
    non2xx: results.reduce((s, r) => s + r.non2xx, 0),
    p99: Math.max(...results.map((r) => r.latency.p99)),
  };
}

/** A burst of `n` concurrent admissions (estimates $0.50-$1.49) over the processes against a $100 day hard cap. */
async function burst(procs: ForgeProcess[], tenant: string, n: number): Promise<{ admittedMicros: number; allowed: number; maxEstimateMicros: number }> {
  const est = (i: number) => (0.5 + (i % 100) / 100).toFixed(2);
  const answers = await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const p = procs[i % procs.length]!;
      const r = await fetch(`${p.url}/v1/admissions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${p.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ tenant_id: tenant, run_id: 'burst', task_type: 'eval', estimated_cost_usd: est(i) }),
      });
      if (r.status !== 200) throw new Error(`admission ${i}: HTTP ${r.status} ${await r.text()}`);
      return { i, d: (await r.json()) as { decision: string } };
    }),
  );
  const allowed = answers.filter((a) => a.d.decision === 'allow');
  return {
    admittedMicros: allowed.reduce((s, a) => s + usdToMicros(est(a.i)), 0),
    allowed: allowed.length,
    maxEstimateMicros: usdToMicros(est(99)),
  };
}

const fmt = (x: number, digits = 0) => x.toLocaleString('en-US', { maximumFractionDigits: digits });

const bench: Benchmark = {
  name: 'scale',
  description:
    'Admissions/s (reserve + settle, autocannon from this process) with 1, 2 and 4 Forge API processes on one local Redis, the ratio to 1 process, CPU and Redis commands per admission, and spend admitted past a $100 cap by a burst of concurrent admissions over the processes.',
  async run(size) {
    const s = SIZES[size];
    const redis = await startRedis();
    const probe = new Redis(redis.url, { lazyConnect: false, maxRetriesPerRequest: 1 });
    const rows: BenchRow[] = [];
    const notes: string[] = [];
    const perConfig: Array<{ n: number; rate: number; apiCpuUs: number; redisCpuUs: number; cmds: number; byCmd: Map<string, number>; admissions: number; p99: number }> = [];
    let healthz = 0;
    let over: { admittedMicros: number; allowed: number; maxEstimateMicros: number; procs: number } | undefined;
    try {
      // Every process starts once (startup dominates the tiny size); configuration n drives the first n.
      const max = Math.max(...s.procs);
      const prefix = `scale${Date.now()}:`;
      const env = { FORGE_REDIS_URL: redis.url, FORGE_REDIS_PREFIX: prefix, FORGE_ROLLUP_INTERVAL_MS: '3600000', FORGE_FLUSH_INTERVAL_MS: '200' };
      // A tenant exists before anything is done in its name: every tenant used is named in the bands file.
      const tenants = Object.fromEntries(['warm', ...s.procs.map((n) => `t${n}`)].map((t) => [t, { B_unit_cap: 100 }]));
      const bands = bandsYaml({ ...tenants, cap: { B_day_soft: CAP_USD * 0.8, B_day_hard: CAP_USD } });
      const all = await Promise.all(Array.from({ length: max }, () => startForgeProcess(env, bands)));
      try {
        // Warm-up (JIT, connections, Lua script cache) of every process.
        await cycle(all, 'warm', s.warmSeconds, s.connections);
        healthz = (await autocannon({ url: `${all[0]!.url}/healthz`, connections: s.connections, duration: s.seconds })).requests.total / s.seconds;
        for (const n of s.procs) {
          const procs = all.slice(0, n);
          const cpu0 = procs.map((p) => cpuSeconds(p.child.pid!));
          const r0 = await redisCounters(probe);
          const c = await cycle(procs, `t${n}`, s.seconds, s.connections);
          const r1 = await redisCounters(probe);
          const apiCpu = procs.reduce((sum, p, i) => sum + cpuSeconds(p.child.pid!) - cpu0[i]!, 0);
          if (c.non2xx > 0) throw new Error(`${n} processes: ${c.non2xx} non-2xx responses`);
          if (c.admissions === 0) throw new Error(`${n} processes: no admission`);
          const byCmd = diffCalls(r0, r1);
          const cmds = [...byCmd.values()].reduce((a, b) => a + b, 0);
          perConfig.push({ n, rate: c.admissions / c.seconds, apiCpuUs: (apiCpu / c.admissions) * 1e6, redisCpuUs: ((r1.cpu - r0.cpu) / c.admissions) * 1e6, cmds: cmds / c.admissions, byCmd, admissions: c.admissions, p99: c.p99 });
        }
        over = { ...(await burst(all, 'cap', s.burst)), procs: max };
      } finally {
        await Promise.all(all.map((p) => p.stop()));
      }
    } finally {
      probe.disconnect();
      await redis.stop();
    }

    const one = perConfig[0]!;
    for (const c of perConfig) {
      rows.push(
        c.n === 1
          ? { metric: 'admissions/s (reserve + settle), 1 API process', value: c.rate, unit: 'admissions/s', baselineLabel: 'GET /healthz on the same process (HTTP floor)', baseline: healthz, ratio: c.rate / healthz }
          : { metric: `admissions/s (reserve + settle), ${c.n} API processes`, value: c.rate, unit: 'admissions/s', baselineLabel: '1 API process, same run', baseline: one.rate, ratio: c.rate / one.rate, target: 'scales with cores (2 here)' },
      );
    }
    for (const c of perConfig) {
      rows.push({ metric: `API CPU per admission, ${c.n} process${c.n === 1 ? '' : 'es'}`, value: c.apiCpuUs, unit: 'µs', baselineLabel: '1 API process', baseline: one.apiCpuUs, ratio: c.apiCpuUs / one.apiCpuUs });
    }
    const last = perConfig.at(-1)!;
    rows.push({ metric: `Redis CPU per admission, ${last.n} processes`, value: last.redisCpuUs, unit: 'µs', baselineLabel: '1 API process', baseline: one.redisCpuUs, ratio: last.redisCpuUs / one.redisCpuUs });
    rows.push({ metric: `Redis commands per admission (reserve + settle), ${last.n} processes`, value: last.cmds, unit: 'commands', baselineLabel: '1 API process', baseline: one.cmds, ratio: last.cmds / one.cmds });
    if (over) {
      const past = Math.max(0, over.admittedMicros - usdToMicros(CAP_USD));
      rows.push({
        metric: `spend admitted past a $${CAP_USD} cap, ${s.burst} concurrent admissions over ${over.procs} processes`,
        value: past / 1e6,
        unit: 'USD',
        baselineLabel: 'one task estimate (the largest, $1.49)',
        baseline: over.maxEstimateMicros / 1e6,
        ratio: past / over.maxEstimateMicros,
        target: '<= one estimate',
      });
      notes.push(`Overshoot burst: ${over.allowed} of ${s.burst} admitted for $${microsToUsd(over.admittedMicros)} against the $${CAP_USD} day hard cap.`);
      if (past > over.maxEstimateMicros) throw new Error(`admitted $${microsToUsd(past)} past the cap with ${over.procs} processes`);
    }
    notes.push(
      `${s.connections} autocannon connections split over the processes, ${s.seconds} s per configuration after a warm-up; each connection loops admission then settle. GET /healthz floor: ${fmt(healthz)} req/s with the same connections.`,
      ...perConfig.map(
        (c) =>
          `${c.n} process${c.n === 1 ? '' : 'es'}: ${fmt(c.rate)} admissions/s, p99 ${c.p99} ms per request; API CPU ${fmt(c.apiCpuUs)} µs/admission (${fmt(1e6 / c.apiCpuUs)} admissions per API core-second); Redis CPU ${fmt(c.redisCpuUs, 1)} µs/admission (${fmt(1e6 / c.redisCpuUs)} per Redis core-second); Redis commands per admission ${fmt(c.cmds, 2)}: ${[...c.byCmd.entries()]
            .sort((a, b) => b[1] - a[1])
            .map(([k, v]) => `${k} ${fmt(v / c.admissions, 2)}`)
            .join(', ')}.`,
      ),
      'The load generator, every API process and Redis share the same cores: the per-core figures (CPU per admission) are what a plan scales by; the admissions/s ratio only shows how far one machine goes.',
    );
    return { rows, notes };
  },
};
export default bench;

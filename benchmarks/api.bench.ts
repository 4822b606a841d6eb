import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { cpus } from 'node:os';
import { createInterface } from 'node:readline';
import { median, type Benchmark, type BenchRow } from './harness.ts';
import type { LoadResult, LoadSpec } from './servers/load.ts';

/**
 * Where the server and the load generator run: on a machine with two cores or more (and taskset), the
 * server on core 1 and the load generator on core 0, so the generator's own work is not in the server's
 * latency; else both unpinned (and the method says so).
 */
const PINNED = process.platform === 'linux' && cpus().length >= 2 && spawnSync('taskset', ['-c', '0', 'true']).status === 0;

function pinned(core: number, args: string[]): [string, string[]] {
  return PINNED ? ['taskset', ['-c', String(core), process.execPath, ...args]] : [process.execPath, args];
}

async function startServer(mode: 'hello' | 'forge'): Promise<{ child: ChildProcess; port: number; key?: string }> {
  // taskset execs the command: the child's pid is the server's.
  const [cmd, args] = pinned(1, ['--import', 'tsx', 'benchmarks/servers/api-server.ts', mode]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const rl = createInterface({ input: child.stdout! });
  const [line] = (await once(rl, 'line')) as [string];
  rl.close();
  return { child, ...(JSON.parse(line) as { port: number; key?: string }) };
}

async function stop(child: ChildProcess): Promise<void> {
  child.kill('SIGTERM');
  if (child.exitCode === null) await once(child, 'exit');
}

/** One measurement by the load generator (benchmarks/servers/load.ts) in its own process. */
async function load(spec: LoadSpec): Promise<LoadResult> {
  const [cmd, args] = pinned(0, ['--import', 'tsx', 'benchmarks/servers/load.ts', JSON.stringify(spec)]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  const line = out.trim().split('\n').at(-1) ?? '';
  if (code !== 0 || !line.startsWith('{')) throw new Error(`load generator failed (${code}): ${out}`);
  return JSON.parse(line) as LoadResult;
}

/** Several measurements as one: requests, window and server CPU summed; percentiles of the rounds' medians. */
function pooled(xs: LoadResult[]): LoadResult {
  const sum = (f: (x: LoadResult) => number) => xs.reduce((acc, x) => acc + f(x), 0);
  const cpu = xs.every((x) => x.serverCpuMs !== undefined) ? { serverCpuMs: sum((x) => x.serverCpuMs!) } : {};
  return { rps: median(xs.map((x) => x.rps)), total: sum((x) => x.total), p50: median(xs.map((x) => x.p50)), p99: median(xs.map((x) => x.p99)), non2xx: sum((x) => x.non2xx), windowMs: sum((x) => x.windowMs), ...cpu };
}

/** Server CPU per request, µs, and its share of one core over the window. */
function cpuOf(r: LoadResult): { perRequestUs: number; coreShare: number } {
  const ms = r.serverCpuMs ?? NaN;
  return { perRequestUs: (ms * 1000) / r.total, coreShare: ms / r.windowMs };
}

const fmt = (n: number, d = 2): string => n.toFixed(d);

type Server = Awaited<ReturnType<typeof startServer>>;

/** The four routes measured, on these two servers. */
function targetsOf(hello: Server, forge: Server) {
  const auth = { authorization: `Bearer ${forge.key!}`, 'content-type': 'application/json' };
  const body = JSON.stringify({ tenant_id: 'bench', run_id: 'r1', task_type: 'eval', estimated_cost_usd: '0.01' });
  const json = { 'content-type': 'application/json' };
  return {
    hello: { url: `http://127.0.0.1:${hello.port}/hello`, method: 'GET', headers: {}, serverPid: hello.child.pid! },
    helloPost: { url: `http://127.0.0.1:${hello.port}/hello`, method: 'POST', headers: json, body, serverPid: hello.child.pid! },
    guardrail: { url: `http://127.0.0.1:${forge.port}/v1/guardrail/tenant:bench`, method: 'GET', headers: auth, serverPid: forge.child.pid! },
    admissions: { url: `http://127.0.0.1:${forge.port}/v1/admissions`, method: 'POST', headers: auth, body, serverPid: forge.child.pid! },
  } as const;
}

/** A target sent as a runner's cycle: the request, then `path` (with the reservation id) and a settle body. */
function cycleOf<T extends { url: string }>(t: T, path: string): T & { then: { path: string; body: string } } {
  return { ...t, then: { path, body: JSON.stringify({ actual_cost_usd: '0.000001', event_id: 'bench-{n}' }) } };
}

/**
 * HTTP throughput and latency of the guardrail read and of admissions, against fastify hello-world routes
 * served and measured the same way: each server in its own process pinned to one core, the load generator
 * in its own process on the other; throughput from 50 connections as fast as the server answers, latency
 * at a fixed, evenly spaced rate (25% and 50% of each server's own peak) from 10 connections.
 */
const bench: Benchmark = {
  name: 'api',
  description: 'GET /v1/guardrail/{scope} and POST /v1/admissions (auth, schema, reserve in the in-process ledger) vs fastify hello-world routes; server on one core, load generator on the other; peak from autocannon (50 connections), latency at a fixed evenly spaced rate (10 connections).',
  async run(size) {
    const seconds = size === 'full' ? 10 : 1;
    let hello = await startServer('hello');
    let forge = await startServer('forge');
    try {
      let targets = targetsOf(hello, forge);
      // Warm every route (JIT) before measuring.
      for (const t of Object.values(targets)) await load({ ...t, mode: 'peak', seconds: 1, connections: 50 });
      // Peak throughput in rounds that alternate the servers (hello, guardrail, admissions, hello POST), so
      // that a change of the machine's load from other work falls on both sides of each ratio: each figure is
      // the median of its rounds, each ratio the median of the rounds' ratios.
      const rounds = size === 'full' ? 5 : 1;
      const perRound = seconds / rounds;
      const runs: Record<'h' | 'g' | 'a' | 'hp', LoadResult[]> = { h: [], g: [], a: [], hp: [] };
      for (let i = 0; i < rounds; i++) {
        runs.h.push(await load({ ...targets.hello, mode: 'peak', seconds: perRound, connections: 50 }));
        runs.g.push(await load({ ...targets.guardrail, mode: 'peak', seconds: perRound, connections: 50 }));
        runs.a.push(await load({ ...targets.admissions, mode: 'peak', seconds: perRound, connections: 50 }));
        runs.hp.push(await load({ ...targets.helloPost, mode: 'peak', seconds: perRound, connections: 50 }));
      }
      for (const x of [...runs.g, ...runs.a]) if (x.non2xx > 0) throw new Error(`${x.non2xx} non-2xx responses at peak`);
      const rps = (xs: LoadResult[]) => median(xs.map((x) => x.rps));
      const ratioOf = (xs: LoadResult[], base: LoadResult[]) => median(xs.map((x, i) => x.rps / base[i]!.rps));
      const [h, g, a, hp] = [runs.h, runs.g, runs.a, runs.hp].map((xs) => pooled(xs)) as [LoadResult, LoadResult, LoadResult, LoadResult];
      const rows: BenchRow[] = [];
      const note = rounds > 1 ? `median of ${rounds} alternating rounds` : undefined;
      rows.push({ metric: 'GET /v1/guardrail throughput', value: rps(runs.g), unit: 'req/s', baselineLabel: 'fastify hello-world', baseline: rps(runs.h), ratio: ratioOf(runs.g, runs.h), target: '>= 0.7 of hello-world', ...(note ? { note } : {}) });
      rows.push({ metric: 'POST /v1/admissions throughput', value: rps(runs.a), unit: 'req/s', baselineLabel: 'fastify hello-world', baseline: rps(runs.h), ratio: ratioOf(runs.a, runs.h), ...(note ? { note } : {}) });
      rows.push({ metric: 'POST /v1/admissions throughput (vs a POST hello-world)', value: rps(runs.a), unit: 'req/s', baselineLabel: 'fastify hello-world POST, same JSON body', baseline: rps(runs.hp), ratio: ratioOf(runs.a, runs.hp), target: '>= 0.8 of a hello-world POST', ...(note ? { note } : {}) });
      // A runner's cycle, on fresh servers: each admission's reservation settled at once on the same
      // connection (admit, then settle, as a runner does), against the hello-world POST sent twice the same
      // way. The peak rounds above never settle (up to a million reservations open at the 60 s TTL); here
      // the ledger holds only the reservations in flight.
      await stop(hello.child);
      await stop(forge.child);
      hello = await startServer('hello');
      forge = await startServer('forge');
      targets = targetsOf(hello, forge);
      const cycles = { a: cycleOf(targets.admissions, '/v1/admissions/{id}/settle'), hp: cycleOf(targets.helloPost, '/hello') };
      for (const t of [cycles.a, cycles.hp]) await load({ ...t, mode: 'cycle', seconds: 1, connections: 50 });
      const cycleRuns: Record<'a' | 'hp', LoadResult[]> = { a: [], hp: [] };
      const cycleRounds = size === 'full' ? 3 : 1;
      const cycleSeconds = size === 'full' ? 2 : 1;
      for (let i = 0; i < cycleRounds; i++) {
        cycleRuns.a.push(await load({ ...cycles.a, mode: 'cycle', seconds: cycleSeconds, connections: 50 }));
        cycleRuns.hp.push(await load({ ...cycles.hp, mode: 'cycle', seconds: cycleSeconds, connections: 50 }));
      }
      for (const x of cycleRuns.a) if (x.non2xx > 0) throw new Error(`${x.non2xx} non-2xx responses in the admit-and-settle cycle`);
      const [ca, chp] = [pooled(cycleRuns.a), pooled(cycleRuns.hp)];
      rows.push({ metric: 'POST /v1/admissions, each settled at once (admit + settle requests, half of them admissions)', value: rps(cycleRuns.a), unit: 'req/s', baselineLabel: 'fastify hello-world POST, sent twice the same way', baseline: rps(cycleRuns.hp), ratio: ratioOf(cycleRuns.a, cycleRuns.hp), ...(cycleRounds > 1 ? { note: `median of ${cycleRounds} alternating rounds` } : {}) });
      // Latency below saturation: each server at a quarter and at half of its own peak, evenly spaced. On
      // fresh servers: the peak rounds never settle an admission, and the million reservations they leave
      // open (60 s TTL) would put their collection pauses into these figures; real runners settle.
      await stop(hello.child);
      await stop(forge.child);
      hello = await startServer('hello');
      forge = await startServer('forge');
      targets = targetsOf(hello, forge);
      for (const t of [targets.admissions, targets.helloPost]) await load({ ...t, mode: 'paced', seconds: 1, connections: 10, rate: 2000 });
      const paced: string[] = [];
      for (const share of [0.25, 0.5]) {
        const ap = await load({ ...targets.admissions, mode: 'paced', seconds, connections: 10, rate: Math.round(rps(runs.a) * share) });
        const hq = await load({ ...targets.helloPost, mode: 'paced', seconds, connections: 10, rate: Math.round(rps(runs.hp) * share) });
        if (ap.non2xx > 0) throw new Error(`admissions at ${share} of peak: ${ap.non2xx} non-2xx responses`);
        const pct = `${share * 100}%`;
        const at = (x: LoadResult) => `${Math.round(x.rps).toLocaleString('en-US')} req/s`;
        rows.push({ metric: `POST /v1/admissions p50 at ${pct} of its peak (${at(ap)})`, value: ap.p50, unit: 'ms', baselineLabel: `hello-world POST at ${pct} of its peak (${at(hq)})`, baseline: hq.p50, ratio: hq.p50 > 0 ? ap.p50 / hq.p50 : undefined });
        rows.push({ metric: `POST /v1/admissions p99 at ${pct} of its peak (${at(ap)})`, value: ap.p99, unit: 'ms', baselineLabel: `hello-world POST at ${pct} of its peak (${at(hq)})`, baseline: hq.p99, ratio: hq.p99 > 0 ? ap.p99 / hq.p99 : undefined, ...(share === 0.5 ? { target: 'p99 <= 1 ms' } : {}) });
        const ac = cpuOf(ap);
        const hc = cpuOf(hq);
        if (share === 0.5 && Number.isFinite(ac.perRequestUs) && Number.isFinite(hc.perRequestUs)) {
          rows.push({ metric: `POST /v1/admissions server CPU per request at ${pct} of its peak`, value: ac.perRequestUs, unit: 'µs', baselineLabel: `hello-world POST at ${pct} of its peak`, baseline: hc.perRequestUs, ratio: ac.perRequestUs / hc.perRequestUs });
        }
        paced.push(`at ${pct}: server CPU ${fmt(ac.perRequestUs, 1)} µs per admission, ${fmt(hc.perRequestUs, 1)} µs per hello POST`);
      }
      const share = (x: LoadResult) => `${Math.round(cpuOf(x).coreShare * 100)}%`;
      const method = PINNED
        ? 'Each server in its own process pinned to core 1 (taskset -c 1), the load generator (benchmarks/servers/load.ts) in its own process pinned to core 0 (taskset -c 0): the same for the hello-world servers and Forge.'
        : 'Not pinned (fewer than 2 cores or no taskset): server and load generator share the cores, so latencies include the load generator\'s own work.';
      return {
        rows,
        notes: [
          `${method} Throughput: autocannon, 50 connections, as fast as the server answers, ${seconds} s per server in all after 1 s of warm-up per route. Latency: requests at a fixed rate, evenly spaced (request i due at i / rate), over at most 10 keep-alive connections, each latency from when the request was due (waiting for a free connection counts), at 25% and 50% of each server's own peak, on fresh servers warmed for 1 s (the peak rounds leave up to a million never-settled reservations open); fractional ms.`,
          `Admit and settle (a runner's cycle), on fresh servers: ${cycleRounds} round(s) of ${cycleSeconds} s per server, alternating, 50 connections, each connection sending an admission and then the settle of the reservation it got (actual 0.000001 USD, a unique event id), against the hello-world POST sent twice the same way; per round, Forge / hello: ${cycleRuns.a.map((x, i) => (x.rps / cycleRuns.hp[i]!.rps).toFixed(2)).join(', ')}; admissions ${Math.round(rps(cycleRuns.a) / 2).toLocaleString('en-US')} per second; server CPU per request ${fmt(cpuOf(ca).perRequestUs, 1)} µs (hello POST ${fmt(cpuOf(chp).perRequestUs, 1)} µs), share of its core ${share(ca)} (hello ${share(chp)}).`,
          `Peak throughput: ${rounds} round(s) of ${perRound} s per server, alternating; per round, admissions / hello POST: ${runs.a.map((x, i) => (x.rps / runs.hp[i]!.rps).toFixed(2)).join(', ')}. Server CPU (from /proc/PID/stat, 10 ms ticks) as a share of its core at peak: hello ${share(h)}, hello POST ${share(hp)}, guardrail ${share(g)}, admissions ${share(a)} (near 100%: the server, not the load generator, set the peak; less: the core was shared with other work). Server CPU per request at peak: hello POST ${fmt(cpuOf(hp).perRequestUs, 1)} µs, admissions ${fmt(cpuOf(a).perRequestUs, 1)} µs. p50 / p99 at peak (50 connections, medians of the rounds): hello ${fmt(h.p50)} / ${fmt(h.p99)} ms, hello POST ${fmt(hp.p50)} / ${fmt(hp.p99)} ms, guardrail ${fmt(g.p50)} / ${fmt(g.p99)} ms, admissions ${fmt(a.p50)} / ${fmt(a.p99)} ms. ${paced.join('; ')}.`,
        ],
      };
    } finally {
      await stop(hello.child);
      await stop(forge.child);
    }
  },
};
export default bench;

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import autocannon from 'autocannon';
import { percentile, type Benchmark, type BenchRow } from './harness.ts';

async function startServer(mode: 'hello' | 'forge'): Promise<{ child: ChildProcess; port: number; key?: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'benchmarks/servers/api-server.ts', mode], { stdio: ['ignore', 'pipe', 'inherit'] });
  const rl = createInterface({ input: child.stdout! });
  const [line] = (await once(rl, 'line')) as [string];
  rl.close();
  return { child, ...(JSON.parse(line) as { port: number; key?: string }) };
}

async function stop(child: ChildProcess): Promise<void> {
  child.kill('SIGTERM');
  if (child.exitCode === null) await once(child, 'exit');
}

interface Load {
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
}

/**
 * Load for `seconds` from 50 connections, as fast as the server answers or at `rate` requests/s in all.
 * Latencies are each response's own time (fractional ms, from autocannon's response events; its
 * histogram keeps whole milliseconds only).
 */
async function load(url: string, seconds: number, req: { method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: string }, rate?: number): Promise<Load> {
  const times: number[] = [];
  const opts = { url, connections: 50, duration: seconds, method: req.method ?? 'GET', headers: req.headers ?? {}, ...(req.body ? { body: req.body } : {}), ...(rate ? { overallRate: Math.max(1, Math.round(rate)) } : {}) };
  const r = await new Promise<autocannon.Result>((resolve, reject) => {
    const inst = autocannon(opts, (err, result) => (err ? reject(err as Error) : resolve(result)));
    inst.on('response', (_client, status, _bytes, ms) => {
      if (status < 300) times.push(ms);
    });
  });
  times.sort((a, b) => a - b);
  return { rps: r.requests.average, p50: percentile(times, 50), p99: percentile(times, 99), non2xx: r.non2xx };
}

/**
 * HTTP throughput and p99 of the guardrail read and of admissions, against a fastify hello-world route
 * served the same way (own process, same machine, same load generator: autocannon, 50 connections).
 */
const bench: Benchmark = {
  name: 'api',
  description: 'GET /v1/guardrail/{scope} and POST /v1/admissions (auth, schema, reserve in the in-process ledger) vs a fastify hello-world route; autocannon, 50 connections, servers in their own processes.',
  async run(size) {
    const seconds = size === 'full' ? 10 : 1;
    const hello = await startServer('hello');
    const forge = await startServer('forge');
    try {
      // Warm both (JIT) before measuring.
      await load(`http://127.0.0.1:${hello.port}/hello`, 1, {});
      const auth = { authorization: `Bearer ${forge.key!}`, 'content-type': 'application/json' };
      await load(`http://127.0.0.1:${forge.port}/v1/guardrail/tenant:bench`, 1, { headers: auth });
      const h = await load(`http://127.0.0.1:${hello.port}/hello`, seconds, {});
      const g = await load(`http://127.0.0.1:${forge.port}/v1/guardrail/tenant:bench`, seconds, { headers: auth });
      const body = JSON.stringify({ tenant_id: 'bench', run_id: 'r1', task_type: 'eval', estimated_cost_usd: '0.01' });
      const a = await load(`http://127.0.0.1:${forge.port}/v1/admissions`, seconds, { method: 'POST', headers: auth, body });
      const hp = await load(`http://127.0.0.1:${hello.port}/hello`, seconds, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      const rows: BenchRow[] = [];
      for (const [label, x] of [['GET /v1/guardrail', g], ['POST /v1/admissions', a]] as const) {
        rows.push({ metric: `${label} throughput`, value: x.rps, unit: 'req/s', baselineLabel: 'fastify hello-world', baseline: h.rps, ratio: x.rps / h.rps, target: label === 'GET /v1/guardrail' ? '>= 0.7 of hello-world' : undefined });
        rows.push({ metric: `${label} p99 latency`, value: x.p99, unit: 'ms', baselineLabel: 'fastify hello-world', baseline: h.p99, ratio: h.p99 > 0 ? x.p99 / h.p99 : undefined });
        if (x.non2xx > 0) throw new Error(`${label}: ${x.non2xx} non-2xx responses`);
      }
      rows.push({ metric: 'POST /v1/admissions throughput (vs a POST hello-world)', value: a.rps, unit: 'req/s', baselineLabel: 'fastify hello-world POST, same JSON body', baseline: hp.rps, ratio: a.rps / hp.rps, target: '>= 0.8 of a hello-world POST' });
      // Latency below saturation: each server at a quarter and at half of its own peak, fixed rate.
      const paced: string[] = [];
      for (const share of [0.25, 0.5]) {
        const ap = await load(`http://127.0.0.1:${forge.port}/v1/admissions`, seconds, { method: 'POST', headers: auth, body }, a.rps * share);
        const hq = await load(`http://127.0.0.1:${hello.port}/hello`, seconds, { method: 'POST', headers: { 'content-type': 'application/json' }, body }, hp.rps * share);
        if (ap.non2xx > 0) throw new Error(`admissions at ${share} of peak: ${ap.non2xx} non-2xx responses`);
        const pct = `${share * 100}%`;
        rows.push({ metric: `POST /v1/admissions p99 at ${pct} of its peak (${Math.round(ap.rps).toLocaleString('en-US')} req/s)`, value: ap.p99, unit: 'ms', baselineLabel: `hello-world POST at ${pct} of its peak (${Math.round(hq.rps).toLocaleString('en-US')} req/s)`, baseline: hq.p99, ratio: hq.p99 > 0 ? ap.p99 / hq.p99 : undefined, ...(share === 0.5 ? { target: 'p99 <= 1 ms' } : {}) });
        paced.push(`at ${pct}: admissions p50 ${ap.p50.toFixed(2)} ms, hello POST p50 ${hq.p50.toFixed(2)} ms`);
      }
      return { rows, notes: [`${seconds} s per measurement after a 1 s warm-up; 50 connections; p50 latency at peak: hello ${h.p50.toFixed(2)} ms, hello POST ${hp.p50.toFixed(2)} ms, guardrail ${g.p50.toFixed(2)} ms, admissions ${a.p50.toFixed(2)} ms; ${paced.join('; ')}. Latencies are each response's own time (fractional ms).`] };
    } finally {
      await stop(hello.child);
      await stop(forge.child);
    }
  },
};
export default bench;

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import autocannon from 'autocannon';
import type { Benchmark, BenchRow } from './harness.ts';

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

async function load(url: string, seconds: number, req: { method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: string }): Promise<Load> {
  const r = await autocannon({ url, connections: 50, duration: seconds, method: req.method ?? 'GET', headers: req.headers ?? {}, ...(req.body ? { body: req.body } : {}) });
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx };
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
        rows.push({ metric: `${label} throughput`, value: x.rps, unit: 'req/s', baselineLabel: 'fastify hello-world', baseline: h.rps, ratio: x.rps / h.rps, target: '>= 70% of hello-world' });
        rows.push({ metric: `${label} p99 latency`, value: x.p99, unit: 'ms', baselineLabel: 'fastify hello-world', baseline: h.p99, ratio: h.p99 > 0 ? x.p99 / h.p99 : undefined });
        if (x.non2xx > 0) throw new Error(`${label}: ${x.non2xx} non-2xx responses`);
      }
      rows.push({ metric: 'POST /v1/admissions throughput (vs a POST hello-world)', value: a.rps, unit: 'req/s', baselineLabel: 'fastify hello-world POST, same JSON body', baseline: hp.rps, ratio: a.rps / hp.rps, target: '>= 70% of hello-world' });
      return { rows, notes: [`${seconds} s per measurement after a 1 s warm-up; p50 latency: hello ${h.p50} ms, hello POST ${hp.p50} ms, guardrail ${g.p50} ms, admissions ${a.p50} ms.`] };
    } finally {
      await stop(hello.child);
      await stop(forge.child);
    }
  },
};
export default bench;

// The ingest benchmark's HTTP load generator, in a process of its own, so that the ingesting process's CPU
// (and its event loop) is the collector's and the engine's, not the client's as well. It builds its JSON
// bodies first (the event generator is the benchmark's: benchmarks/ingest-events.ts), prints "ready",
// waits for a line on stdin, sends every body to POST /v1/events from `concurrency` parallel clients (each
// waits for its answer before sending again: 200 comes only after the store commit), and prints one JSON
// line: the seconds from the first request sent to the last answer read, and this process's CPU seconds.
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { ingestBodies } from '../ingest-events.ts';

export interface IngestLoadSpec {
  url: string;
  /** Events in all, and per request. */
  events: number;
  batch: number;
  concurrency: number;
  /** Event ids are `${prefix}-${i}`. */
  prefix: string;
  /** finalized_at of event i is t0 + i. */
  t0: number;
}

export interface IngestLoadResult {
  seconds: number;
  requests: number;
  /** User + system CPU of the load generator over the same window. */
  cpuSeconds: number;
}

async function post(url: string, body: string): Promise<void> {
  const r = await fetch(`${url}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  if (r.status !== 200) throw new Error(`ingest answered ${r.status}: ${await r.text()}`);
  await r.arrayBuffer();
}

const spec = JSON.parse(process.argv[2] ?? '{}') as IngestLoadSpec;
const bodies = ingestBodies(spec.events, spec.batch, spec.prefix, spec.t0);
// One request first, outside the window (GET /metrics: nothing ingested), so the window does not pay for
// loading this process's HTTP client.
await (await fetch(`${spec.url}/metrics`)).arrayBuffer();
const rl = createInterface({ input: process.stdin });
process.stdout.write('ready\n');
await once(rl, 'line');
rl.close();
let next = 0;
const c0 = process.cpuUsage();
const t0 = performance.now();
await Promise.all(
  Array.from({ length: Math.max(1, Math.min(spec.concurrency, bodies.length)) }, async () => {
    while (next < bodies.length) await post(spec.url, bodies[next++]!);
  }),
);
const seconds = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(c0);
const out: IngestLoadResult = { seconds, requests: bodies.length, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
process.stdout.write(JSON.stringify(out) + '\n');
process.exit(0);

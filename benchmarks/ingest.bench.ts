import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { CostEvent } from '../store/index.ts';
import { childMain, runChild, type Benchmark, type BenchRow, type BenchSize } from './harness.ts';
import { ingestEvent } from './ingest-events.ts';
import type { IngestLoadResult, IngestLoadSpec } from './servers/ingest-load.ts';

/**
 * Events/s through HTTP ingest (POST /v1/events, JSON batches of 100, validated, priced, written through
 * the store's batch writer with exactly-once and the hash chain, 200 only once committed) end to end into
 * the embedded store, against raw inserts of the same priced events into the store's baseline table
 * (same client, no dedup, no chain, no HTTP), measured in the same run and process. Plus peak RSS.
 *
 * The measurement runs in a child process of its own: the embedded engine binds one data directory per
 * process, and the child's maxRSS is the ingest's alone.
 */
interface ChildResult {
  events: number;
  httpSeconds: number;
  writerSeconds: number;
  raw100Seconds: number;
  rawBulkSeconds: number;
  rssBeforeMb: number;
  peakRssMb: number;
  stored: number;
  concurrency: number;
  /** The sustained part: `sustained` events through the batch writer (10,000-event writes, 12 in flight). */
  sustained: number;
  sustainedWriterSeconds: number;
  sustainedRawSeconds: number;
  sustainedStored: number;
  sustainedRssBeforeMb: number;
  sustainedPeakRssMb: number;
  /** HTTP ingest again with batches of BIG_BATCH (the collector's largest), other event ids. */
  bigEvents: number;
  bigSeconds: number;
  bigConcurrency: number;
  bigStored: number;
  /** CPU seconds (user + system) of this process (chdb's threads included) during the HTTP ingest; the load generator runs in its own process. */
  httpCpuSeconds: number;
  /** The same during the ingest in batches of BIG_BATCH. */
  bigCpuSeconds: number;
  /** CPU seconds of the load generator's process during each of the two HTTP runs. */
  loadCpuSeconds: number;
  bigLoadCpuSeconds: number;
  /** cost_events in system.parts after everything was written: rows, compressed bytes on disk, uncompressed bytes. */
  partsRows: number;
  partsBytesOnDisk: number;
  partsUncompressedBytes: number;
}

const SIZES: Record<BenchSize, { events: number; concurrency: number; sustained: number }> = {
  full: { events: 50_000, concurrency: 16, sustained: 1_000_000 },
  tiny: { events: 500, concurrency: 4, sustained: 20_000 },
};
const CHUNK = 10_000;
const BATCH = 100;
/** The largest batch the collector takes per request. */
const BIG_BATCH = 1000;

async function child(size: BenchSize): Promise<ChildResult> {
  const { default: Fastify } = await import('fastify');
  const { openStore } = await import('../store/index.ts');
  const { collectorRoutes, ForgeMetrics, parsePricing, parseTaskEvent, priceTaskEvent, fixedNativePrice } = await import('../collector/index.ts');
  const { events: n, concurrency, sustained } = SIZES[size];
  const dir = mkdtempSync(join(tmpdir(), 'forge-ingest-bench-'));
  const store = await openStore({ dataDir: dir, writer: { flushIntervalMs: 20, maxBatchRows: 10_000 } });
  const pricing = parsePricing(
    `compute: { environments: { gpu-a10: "1.60" } }
storage: { gb_stored: "300", gb_month_usd: "0.23", expected_tasks_day: 200 }
llm: { models: { gpt-4o: { input_per_mtok_usd: "2.50", output_per_mtok_usd: "10.00" } } }
native_price: { source: fixed, usd: "2500" }
`,
    'bench-pricing.yaml',
  );
  const metrics = new ForgeMetrics();
  const app = Fastify({ logger: false });
  await app.register(collectorRoutes, { sink: store.writer, pricing, metrics, knownTenant: () => true, canWriteTenant: () => true });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const t0 = Date.now() - 3_600_000;
    const raw = (i: number, prefix: string) => ingestEvent(i, prefix, t0);
    // The baseline inserts the same events, priced the same way beforehand (pricing is not part of it).
    const priced: CostEvent[] = [];
    for (let i = 0; i < n; i++) {
      const p = parseTaskEvent(raw(i, 'h'), { now: Date.now() });
      if (!p.ok) throw new Error(p.reason);
      const r = await priceTaskEvent(p.event, { pricing, nativePrice: fixedNativePrice('2500'), now: Date.now() });
      if (!r.ok) throw new Error(r.reason);
      priced.push(r.event);
    }
    // Warm-up (JIT, first insert creates parts) on other ids.
    const warm = JSON.stringify({ events: Array.from({ length: BATCH }, (_, k) => raw(k, 'warm')) });
    await post(url, warm);
    await store.insertRaw(priced.slice(0, BATCH));
    if (global.gc) global.gc();
    const rssBeforeMb = process.memoryUsage().rss / 2 ** 20;

    // The HTTP clients run in a process of their own (benchmarks/servers/ingest-load.ts): this process's CPU
    // and event loop are the collector's and the engine's only, as behind a real network.
    const small = await startLoad({ url, events: n, batch: BATCH, concurrency, prefix: 'h', t0 });
    const cpu0 = process.cpuUsage();
    const smallRun = await small.run();
    const httpSeconds = smallRun.seconds;
    const cpu = process.cpuUsage(cpu0);
    const httpCpuSeconds = (cpu.user + cpu.system) / 1e6;

    // The same again with the collector's largest batches (fewer requests, larger commits), new ids.
    const bigSize = Math.min(BIG_BATCH, n);
    const bigConcurrency = Math.max(1, Math.min(4, Math.ceil(n / bigSize)));
    const big = await startLoad({ url, events: n, batch: bigSize, concurrency: bigConcurrency, prefix: 'k', t0 });
    const bigCpu0 = process.cpuUsage();
    const bigRun = await big.run();
    const bigCpu = process.cpuUsage(bigCpu0);
    const bigSeconds = bigRun.seconds;
    const bigCpuSeconds = (bigCpu.user + bigCpu.system) / 1e6;

    // The store's batch writer alone (dedup, hash chain, commit), same batches and parallelism, no HTTP.
    const viaWriter = priced.map((e) => ({ ...e, eventId: `w-${e.eventId}` }));
    let nextW = 0;
    const w0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (nextW < n / BATCH) {
          const b = nextW++;
          await store.writer.write(viaWriter.slice(b * BATCH, (b + 1) * BATCH));
        }
      }),
    );
    const writerSeconds = (performance.now() - w0) / 1000;

    let nextRaw = 0;
    const r0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (nextRaw < n / BATCH) {
          const b = nextRaw++;
          await store.insertRaw(priced.slice(b * BATCH, (b + 1) * BATCH));
        }
      }),
    );
    const raw100Seconds = (performance.now() - r0) / 1000;
    const b0 = performance.now();
    for (let i = 0; i < n; i += 10_000) await store.insertRaw(priced.slice(i, i + 10_000));
    const rawBulkSeconds = (performance.now() - b0) / 1000;

    const listed = await store.listEvents({ tenantId: 'bench' }, { from: t0 - 1, to: t0 + n + 1 }, { limit: 3 * n + BATCH + 1 });
    const stored = listed.filter((e) => e.eventId.startsWith('h-')).length;
    const bigStored = listed.filter((e) => e.eventId.startsWith('k-')).length;
    const peakRssMb = process.resourceUsage().maxRSS / 1024;

    // Sustained: `sustained` events (1M at full size) through the batch writer, written as a stream of
    // 10,000-event writes with up to 12 in flight (built as they are sent, so the RSS is the writer's
    // buffering), vs a raw bulk insert of the same rows through the same client. RSS sampled every 20 ms.
    const s0 = Date.now() - 7_200_000;
    const eventAt = (i: number, tenantId: string): CostEvent => ({ ...priced[i % n]!, tenantId, eventId: `s-${i}`, eventTime: s0 + Math.floor((i * 3_600_000) / sustained) });
    const chunkOf = (off: number, tenantId: string): CostEvent[] => Array.from({ length: Math.min(CHUNK, sustained - off) }, (_, k) => eventAt(off + k, tenantId));
    if (global.gc) global.gc();
    const sustainedRssBeforeMb = process.memoryUsage().rss / 2 ** 20;
    let sustainedPeak = sustainedRssBeforeMb;
    const sampler = setInterval(() => (sustainedPeak = Math.max(sustainedPeak, process.memoryUsage().rss / 2 ** 20)), 20);
    let sustainedStored = 0;
    const inFlight = new Set<Promise<void>>();
    const sw0 = performance.now();
    for (let off = 0; off < sustained; off += CHUNK) {
      const p: Promise<void> = store.writer.write(chunkOf(off, 'sustained')).then((r) => {
        sustainedStored += r.stored;
        inFlight.delete(p);
      });
      inFlight.add(p);
      if (inFlight.size >= 12) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    const sustainedWriterSeconds = (performance.now() - sw0) / 1000;
    clearInterval(sampler);
    const sr0 = performance.now();
    for (let off = 0; off < sustained; off += CHUNK) await store.insertRaw(chunkOf(off, 'sustained-raw'));
    const sustainedRawSeconds = (performance.now() - sr0) / 1000;
    // What the log costs on disk: the active parts of cost_events (HTTP, writer and sustained events).
    const parts = await store.client.query({
      query: `SELECT sum(rows) AS rows, sum(bytes_on_disk) AS disk, sum(data_uncompressed_bytes) AS raw FROM system.parts
               WHERE database = {db: String} AND table = 'cost_events' AND active`,
      query_params: { db: store.database },
      format: 'JSONEachRow',
    });
    const [pr] = await parts.json<{ rows: string; disk: string; raw: string }>();
    return {
      bigEvents: n, bigSeconds, bigConcurrency, bigStored, bigCpuSeconds, loadCpuSeconds: smallRun.cpuSeconds, bigLoadCpuSeconds: bigRun.cpuSeconds,
      httpCpuSeconds, partsRows: Number(pr?.rows ?? 0), partsBytesOnDisk: Number(pr?.disk ?? 0), partsUncompressedBytes: Number(pr?.raw ?? 0),
      events: n, httpSeconds, writerSeconds, raw100Seconds, rawBulkSeconds, rssBeforeMb, peakRssMb, stored, concurrency,
      sustained, sustainedWriterSeconds, sustainedRawSeconds, sustainedStored, sustainedRssBeforeMb, sustainedPeakRssMb: sustainedPeak,
    };
  } finally {
    await app.close();
    await metrics.shutdown();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Starts the load generator (its own process) and waits until it has built its bodies; run() lets it send
 * them and resolves with its measurement.
 */
async function startLoad(spec: IngestLoadSpec): Promise<{ run(): Promise<IngestLoadResult> }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./servers/ingest-load.ts', import.meta.url)), JSON.stringify(spec)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: proc.stdout! });
  const exited = once(proc, 'exit') as Promise<[number | null]>;
  const it = lines[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done || first.value !== 'ready') throw new Error(`the load generator did not start (${(await exited)[0]})`);
  return {
    async run() {
      proc.stdin!.write('go\n');
      const last = await it.next();
      const [code] = await exited;
      if (code !== 0 || last.done || !String(last.value).startsWith('{')) throw new Error(`the load generator failed (${code}): ${last.value ?? ''}`);
      return JSON.parse(String(last.value)) as IngestLoadResult;
    },
  };
}

async function post(url: string, body: string): Promise<void> {
  const r = await fetch(`${url}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  if (r.status !== 200) throw new Error(`ingest answered ${r.status}: ${await r.text()}`);
  await r.arrayBuffer();
}

const bench: Benchmark = {
  name: 'ingest',
  description:
    'Events/s through HTTP ingest (POST /v1/events, JSON batches of 100, parallel clients, 200 only after the store commit) end to end into the embedded store, vs raw inserts of the same priced events (store.insertRaw: no HTTP, validation, pricing, dedup or hash chain) in the same child process; and peak RSS.',
  async run(size) {
    const r = await runChild<ChildResult>(fileURLToPath(import.meta.url), '--ingest-child', size);
    if (r.stored !== r.events) throw new Error(`stored ${r.stored} of ${r.events} events`);
    if (r.bigStored !== r.bigEvents) throw new Error(`stored ${r.bigStored} of ${r.bigEvents} events sent in batches of ${BIG_BATCH}`);
    if (r.sustainedStored !== r.sustained) throw new Error(`the writer stored ${r.sustainedStored} of ${r.sustained} events`);
    const sustainedWriter = r.sustained / r.sustainedWriterSeconds;
    const sustainedRaw = r.sustained / r.sustainedRawSeconds;
    const http = r.events / r.httpSeconds;
    const raw100 = r.events / r.raw100Seconds;
    const bulk = r.events / r.rawBulkSeconds;
    const writer = r.events / r.writerSeconds;
    const rows: BenchRow[] = [
      { metric: 'HTTP ingest into the embedded store', value: http, unit: 'events/s', baselineLabel: `raw insert, batches of ${BATCH}, ${r.concurrency} parallel`, baseline: raw100, ratio: http / raw100 },
      { metric: 'HTTP ingest into the embedded store (vs the writer alone)', value: http, unit: 'events/s', baselineLabel: `store.writer.write, batches of ${BATCH}, ${r.concurrency} parallel, no HTTP`, baseline: writer, ratio: http / writer },
      { metric: 'HTTP ingest into the embedded store (vs bulk)', value: http, unit: 'events/s', baselineLabel: 'raw insert, batches of 10,000', baseline: bulk, ratio: http / bulk },
      {
        metric: `HTTP ingest, batches of ${BIG_BATCH}, ${r.bigConcurrency} parallel (vs bulk)`,
        value: r.bigEvents / r.bigSeconds,
        unit: 'events/s',
        baselineLabel: 'raw insert, batches of 10,000',
        baseline: bulk,
        ratio: r.bigEvents / r.bigSeconds / bulk,
        target: '>= 0.5 of raw bulk',
      },
      {
        metric: `batch writer, ${r.sustained.toLocaleString('en-US')} events sustained (exactly-once, hash chain)`,
        value: sustainedWriter,
        unit: 'events/s',
        baselineLabel: 'raw bulk insert of the same rows, same client (batches of 10,000)',
        baseline: sustainedRaw,
        ratio: sustainedWriter / sustainedRaw,
        target: '>= 0.8 of raw bulk',
      },
      {
        metric: `peak RSS while ${r.sustained.toLocaleString('en-US')} events were buffered and written`,
        value: r.sustainedPeakRssMb,
        unit: 'MiB',
        baselineLabel: 'RSS right before (store open, earlier parts done)',
        baseline: r.sustainedRssBeforeMb,
        ratio: r.sustainedPeakRssMb / r.sustainedRssBeforeMb,
      },
      {
        metric: 'HTTP ingest per CPU core (events per CPU-second of the ingesting process; the load generator in its own process)',
        value: r.events / r.httpCpuSeconds,
        unit: 'events/s',
        baselineLabel: 'the same ingest per wall-clock second',
        baseline: http,
        ratio: r.events / r.httpCpuSeconds / http,
      },
      {
        metric: `HTTP ingest, batches of ${BIG_BATCH}, per CPU core (events per CPU-second of the ingesting process)`,
        value: r.bigEvents / r.bigCpuSeconds,
        unit: 'events/s',
        baselineLabel: 'the same ingest per wall-clock second',
        baseline: r.bigEvents / r.bigSeconds,
        ratio: r.bigSeconds / r.bigCpuSeconds,
      },
      {
        metric: `cost_events on disk per row (${r.partsRows.toLocaleString('en-US')} rows, system.parts)`,
        value: r.partsBytesOnDisk / r.partsRows,
        unit: 'bytes',
        baselineLabel: 'uncompressed bytes per row, same parts',
        baseline: r.partsUncompressedBytes / r.partsRows,
        ratio: r.partsBytesOnDisk / r.partsUncompressedBytes,
      },
      { metric: 'peak RSS of the ingesting process', value: r.peakRssMb, unit: 'MiB', baselineLabel: 'RSS before the measured ingest (store open, app ready, events built)', baseline: r.rssBeforeMb, ratio: r.peakRssMb / r.rssBeforeMb },
    ];
    return {
      rows,
      notes: [
        `${r.events} events, ${r.events / BATCH} requests of ${BATCH} from ${r.concurrency} parallel clients over loopback; store writer flushIntervalMs 20, maxBatchRows 10,000; every event checked stored once afterwards.`,
        `The HTTP clients run in a process of their own (benchmarks/servers/ingest-load.ts, not pinned; the ingesting process not pinned either: the engine's threads use both cores), which used ${r.loadCpuSeconds.toFixed(2)} CPU-s (batches of ${BATCH}) and ${r.bigLoadCpuSeconds.toFixed(2)} CPU-s (batches of ${BIG_BATCH}) against the ingesting process's ${r.httpCpuSeconds.toFixed(2)} and ${r.bigCpuSeconds.toFixed(2)} CPU-s; the raw baselines run in the ingesting process, after the HTTP runs, as before.`,
        `Sustained: ${r.sustained.toLocaleString('en-US')} events written to the batch writer as 10,000-event writes, up to 12 in flight, built as they are sent (RSS sampled every 20 ms); the writer's stored count checked; then the same rows as a raw bulk insert.`,
      ],
    };
  },
};
export default bench;

childMain(import.meta.url, '--ingest-child', child);

import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { bandsYaml, startForgeProcess } from '../test/helpers/forge-process.ts';
import { median, type Benchmark } from './harness.ts';

/**
 * A Forge API process (embedded store, in-process ledger, `forge start`'s wiring) under steady traffic for
 * a long time: cost events over HTTP ingest and admissions reserved then settled, at fixed rates, with
 * event ids never repeated. Its RSS is sampled throughout. Memory must be bounded by configuration
 * (FORGE_MAX_TRACKED_EVENTS: the event ids remembered for idempotence), not by traffic: once the bounds
 * are reached (the warm-up), RSS stays flat.
 *
 * Full size: 30 minutes (FORGE_SOAK_MINUTES to change it), 2,000 events/s in batches of 100, 100
 * admissions/s, FORGE_MAX_TRACKED_EVENTS=200,000 (filled in the first 100 s). Warm-up: the first sixth.
 */
const SIZES = {
  full: { seconds: Number(process.env.FORGE_SOAK_MINUTES ?? 30) * 60, eventsPerSecond: 2_000, admissionsPerSecond: 100, sampleMs: 5_000 },
  tiny: { seconds: 6, eventsPerSecond: 200, admissionsPerSecond: 20, sampleMs: 500 },
} as const;
const BATCH = 100;
const TRACKED = 200_000;

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) / 1024;
}

/** Runs `fn` every `intervalMs` until `until` (ms epoch), at most `maxInFlight` at once; returns how many ran. */
async function paced(intervalMs: number, until: number, maxInFlight: number, fn: (i: number) => Promise<void>): Promise<{ done: number; skipped: number }> {
  let i = 0;
  let inFlight = 0;
  let skipped = 0;
  const running = new Set<Promise<void>>();
  const start = Date.now();
  while (Date.now() < until) {
    const due = start + i * intervalMs;
    if (due > Date.now()) await sleep(due - Date.now());
    if (inFlight >= maxInFlight) {
      skipped++;
    } else {
      inFlight++;
      const p = fn(i).finally(() => {
        inFlight--;
        running.delete(p);
      });
      running.add(p);
    }
    i++;
  }
  await Promise.all(running);
  return { done: i - skipped, skipped };
}

const bench: Benchmark = {
  name: 'soak',
  description:
    'RSS of one Forge API process (embedded store and ledger) under steady traffic: HTTP ingest of cost events with new ids and admissions reserved then settled, at fixed rates for 30 minutes; the RSS after the warm-up (the configured bounds reached) against the RSS later.',
  async run(size) {
    const s = SIZES[size];
    const forge = await startForgeProcess({ FORGE_MAX_TRACKED_EVENTS: String(TRACKED), FORGE_LOG_LEVEL: 'error' }, bandsYaml({ soak: { B_day_hard: 1000000 } }));
    const auth = { authorization: `Bearer ${forge.key}`, 'content-type': 'application/json' };
    const pid = forge.child.pid!;
    const samples: Array<{ t: number; rss: number }> = [];
    let failures = 0;
    let firstFailure = '';
    const fail = (what: string) => {
      failures++;
      firstFailure ||= what;
    };
    try {
      const t0 = Date.now();
      const until = t0 + s.seconds * 1000;
      const sampler = (async () => {
        while (Date.now() < until) {
          samples.push({ t: (Date.now() - t0) / 1000, rss: rssMiB(pid) });
          await sleep(s.sampleMs);
        }
      })();
      let taskN = 0;
      const ingest = paced((1000 * BATCH) / s.eventsPerSecond, until, 16, async (b) => {
        const now = Date.now();
        // Ten tenants' worth of runs, a new run every 10 minutes: scopes grow as a platform's would.
        const run = `soak-${Math.floor((now - t0) / 600_000)}`;
        const events = Array.from({ length: BATCH }, (_, k) => {
          const n = taskN++;
          return {
            event_id: `e-${b}-${k}`, tenant_id: 'soak', run_id: `${run}-${n % 10}`, task_id: `t-${n}`, task_type: `type-${n % 7}`,
            status: n % 20 === 0 ? 'failed' : 'success', finalized_at: now, rli_eval_usd: '0.000010', environment: 'cpu-standard', task_hours: '0.0001',
            llm: [{ model: 'gpt-4o-mini', input_tokens: 100 + (n % 50), output_tokens: 20 }],
          };
        });
        const r = await fetch(`${forge.url}/v1/events`, { method: 'POST', headers: auth, body: JSON.stringify({ events }) });
        if (r.status !== 200) fail(`ingest ${r.status}: ${await r.text()}`);
        else await r.arrayBuffer();
      });
      const admissions = paced(1000 / s.admissionsPerSecond, until, 32, async (i) => {
        const a = await fetch(`${forge.url}/v1/admissions`, { method: 'POST', headers: auth, body: JSON.stringify({ tenant_id: 'soak', run_id: `adm-${i % 50}`, task_type: 'eval', estimated_cost_usd: '0.000100' }) });
        const body = (await a.json()) as { decision?: string; reservation_id?: string };
        if (a.status !== 200 || body.decision !== 'allow') return fail(`admission ${a.status}: ${JSON.stringify(body)}`);
        const st = await fetch(`${forge.url}/v1/admissions/${body.reservation_id}/settle`, { method: 'POST', headers: auth, body: JSON.stringify({ actual_cost_usd: '0.000090', event_id: `adm-${i}` }) });
        if (st.status !== 200) fail(`settle ${st.status}: ${await st.text()}`);
        else await st.arrayBuffer();
      });
      const [ing, adm] = await Promise.all([ingest, admissions, sampler]);
      samples.push({ t: (Date.now() - t0) / 1000, rss: rssMiB(pid) });
      if (failures > 0) throw new Error(`${failures} requests failed; first: ${firstFailure}`);
      const warm = s.seconds / 6;
      const window = Math.max(s.seconds / 30, s.sampleMs / 1000);
      const around = (t: number) => median(samples.filter((x) => x.t >= t - window && x.t <= t).map((x) => x.rss));
      const mid = warm + (s.seconds - warm) / 2;
      // Drift, robust to the engine's passing peaks (merges): the median RSS of the second half after the
      // warm-up against that of the first half.
      const firstHalf = median(samples.filter((x) => x.t >= warm && x.t < mid).map((x) => x.rss));
      const secondHalf = median(samples.filter((x) => x.t >= mid).map((x) => x.rss));
      const peakAfter = Math.max(...samples.filter((x) => x.t >= warm).map((x) => x.rss));
      const minutes = (t: number) => (t % 60 === 0 ? `${t / 60} min` : `${Math.floor(t / 60)} min ${Math.round(t % 60)} s`);
      const checkpoints = Array.from({ length: 12 }, (_, k) => (s.seconds * (k + 1)) / 12).map((t) => `${minutes(t)}: ${around(t).toFixed(0)} MiB`);
      const eventsSent = ing.done * BATCH;
      return {
        rows: [
          { metric: `median RSS, second half after the warm-up (${minutes(mid)} to ${minutes(s.seconds)})`, value: secondHalf, unit: 'MiB', baselineLabel: `median RSS, first half after the warm-up (${minutes(warm)} to ${minutes(mid)})`, baseline: firstHalf, ratio: secondHalf / firstHalf, target: 'flat within 10% (ratio 0.9-1.1)' },
          { metric: 'peak RSS after the warm-up', value: peakAfter, unit: 'MiB', baselineLabel: 'median RSS, first half after the warm-up', baseline: firstHalf, ratio: peakAfter / firstHalf },
          { metric: 'events ingested per second (sustained)', value: eventsSent / s.seconds, unit: 'events/s', baselineLabel: 'rate asked for', baseline: s.eventsPerSecond, ratio: eventsSent / s.seconds / s.eventsPerSecond },
        ],
        notes: [
          `${eventsSent.toLocaleString('en-US')} events in ${ing.done.toLocaleString('en-US')} batches of ${BATCH} (${ing.skipped} batches skipped: ${16} already in flight), ${adm.done.toLocaleString('en-US')} admissions reserved and settled (${adm.skipped} skipped); every request answered 200. FORGE_MAX_TRACKED_EVENTS=${TRACKED.toLocaleString('en-US')}.`,
          `RSS (median of the ${window} s before each point): ${checkpoints.join('; ')}.`,
        ],
      };
    } finally {
      await forge.stop();
    }
  },
};
export default bench;

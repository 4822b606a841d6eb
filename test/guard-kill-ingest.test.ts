import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startForgeProcess, type ForgeProcess } from './helpers/forge-process.ts';

// kill -9 of `forge start` in the middle of an ingest batch, at several random points, then a replay of
// everything by a retrying client: no event lost, none counted twice, in the log and in the live totals.

const dir = mkdtempSync(join(tmpdir(), 'forge-kill-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'bands.yaml'), 'global:\n  B_day_soft: 1000000\n  B_day_hard: 1000000\n  B_week_soft: 1000000\n  B_week_hard: 1000000\n  B_run_cap: 1000000\n  B_unit_cap: 1000\ntenants:\n  kill: {}\n');
const env = { FORGE_DATA_DIR: join(dir, 'data'), FORGE_BUDGETS_FILE: join(dir, 'bands.yaml'), FORGE_FLUSH_INTERVAL_MS: '20' };

const BATCHES = 30;
const PER_BATCH = 50;
// Amounts vary per event (0.001 to 0.999 USD) so a lost or doubled event changes the total.
const usdOf = (n: number) => ((n % 999) + 1) / 1000;
// A retry resends the same events: the same ids and the same finalized_at.
const T0 = Date.now() - 60_000;
const batch = (b: number) =>
  Array.from({ length: PER_BATCH }, (_, i) => {
    const n = b * PER_BATCH + i;
    return {
      event_id: `k-${n}`,
      tenant_id: 'kill',
      run_id: `run-${b % 3}`,
      task_id: `t-${n}`,
      task_type: 'eval',
      environment: 'cpu-standard',
      status: 'success',
      finalized_at: new Date(T0 + n).toISOString(),
      rli_eval_usd: usdOf(n).toFixed(3),
      task_hours: '0',
    };
  });
const expectedMicros = Array.from({ length: BATCHES * PER_BATCH }, (_, n) => Math.round(usdOf(n) * 1e6)).reduce((a, b) => a + b, 0);

async function post(p: ForgeProcess, body: unknown): Promise<number> {
  const r = await fetch(`${p.url}/v1/events`, { method: 'POST', headers: { authorization: `Bearer ${p.key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  await r.text();
  return r.status;
}

// A small deterministic generator, so a failure can be replayed (the seed is in the test name).
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

describe('kill -9 in the middle of ingest', () => {
  const seed = 20261201;
  it(`loses nothing and counts nothing twice (3 kills at random points, seed ${seed})`, async () => {
    const rand = rng(seed);
    for (let kill = 0; kill < 3; kill++) {
      const p = await startForgeProcess(env);
      const stopAfter = 2 + Math.floor(rand() * (BATCHES - 4)); // the batch during which the kill lands
      const delayMs = Math.floor(rand() * 40);
      let sent = 0;
      try {
        for (let b = 0; b < BATCHES; b++) {
          const inFlight = post(p, { events: batch(b) }).catch(() => 0);
          if (b === stopAfter) {
            await new Promise((r) => setTimeout(r, delayMs));
            p.child.kill('SIGKILL');
            await inFlight;
            break;
          }
          expect(await inFlight).toBe(200);
          sent++;
        }
      } finally {
        await p.stop();
      }
      expect(sent).toBe(stopAfter);
    }
    // The client replays every batch (it never learned which ones landed).
    const p = await startForgeProcess(env);
    try {
      // A retrying client: a 5xx (the store still busy after the kills) is sent again, as producers do.
      for (let b = 0; b < BATCHES; b++) {
        let status = await post(p, { events: batch(b) });
        for (let attempt = 0; status >= 500 && attempt < 5; attempt++) {
          await new Promise((r) => setTimeout(r, 200));
          status = await post(p, { events: batch(b) });
        }
        expect(status).toBe(200);
      }
      const auth = { authorization: `Bearer ${p.key}` };
      const g = (await (await fetch(`${p.url}/v1/guardrail/tenant:kill`, { headers: auth })).json()) as { spend: { day_usd: string; run_usd: string; tasks_today: number } };
      const usd = (m: number) => (m / 1e6).toFixed(6).replace(/\.?0+$/, '');
      // Live totals (the guardrail) and the log agree, to the micro-dollar.
      expect(g.spend.tasks_today + 0).toBe(BATCHES * PER_BATCH);
      expect(g.spend.run_usd).toBe(usd(expectedMicros));
      const v = (await (await fetch(`${p.url}/v1/audit/verify?tenant_id=kill`, { headers: auth })).json()) as { ok: boolean; checked: number };
      expect(v).toMatchObject({ ok: true, logs: { cost_events: { ok: true, checked: BATCHES * PER_BATCH }, guardrail_events: { ok: true } } });
    } finally {
      await p.stop();
    }
  }, 180_000);
});

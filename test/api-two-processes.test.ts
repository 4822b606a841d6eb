import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisLedger } from '../guard/index.ts';
import { bandsYaml, startForgeProcess, type ForgeProcess } from './helpers/forge-process.ts';
import { freshPrefix, startRedis, type RedisServer } from './helpers/redis.ts';

// Two Forge API processes (own data directories) sharing live state through one real Redis: one budget,
// enforced by both, through their HTTP admissions.
const BANDS = bandsYaml({ acme: { B_day_soft: 40, B_day_hard: 50, B_unit_cap: 100 } });

let redis: RedisServer;
let prefix: string;
let procs: ForgeProcess[] = [];

beforeAll(async () => {
  redis = await startRedis();
  prefix = freshPrefix('two');
  const env = { FORGE_REDIS_URL: redis.url, FORGE_REDIS_PREFIX: prefix, FORGE_ROLLUP_INTERVAL_MS: '3600000', FORGE_LEDGER_TIMEOUT_MS: '10000' };
  procs = await Promise.all([startForgeProcess(env, BANDS), startForgeProcess(env, BANDS)]);
}, 60_000);

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop()));
  await redis?.stop();
});

async function post(p: ForgeProcess, path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${p.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${p.key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, json: (await r.json()) as Record<string, unknown> };
}

describe('two API processes on one Redis', () => {
  it('1,000 concurrent admissions split over both hold one cap (cap + one estimate), and settles free the rest', async () => {
    // Estimates of 0.10-1.09 USD against the 50 USD day hard cap of tenant acme.
    const est = (i: number) => (0.1 + (i % 100) / 100).toFixed(2);
    const answers = await Promise.all(
      Array.from({ length: 1000 }, (_, i) => post(procs[i % 2]!, '/v1/admissions', { tenant_id: 'acme', run_id: `r${i % 7}`, task_type: 'eval', estimated_cost_usd: est(i) }).then((r) => ({ i, ...r }))),
    );
    expect(answers.filter((a) => a.status !== 200).map((a) => a.json)).toEqual([]);
    const allowed = answers.filter((a) => a.json.decision === 'allow');
    const denied = answers.filter((a) => a.json.decision === 'deny');
    expect(allowed.length + denied.length).toBe(1000);
    // Both processes admitted some: one budget, two enforcers.
    expect(new Set(allowed.map((a) => a.i % 2)).size).toBe(2);
    const admittedCents = allowed.reduce((s, a) => s + Math.round(Number(est(a.i)) * 100), 0);
    expect(admittedCents).toBeGreaterThan(45 * 100);
    expect(admittedCents).toBeLessThanOrEqual(50 * 100 + 109);

    // The shared counters hold exactly what was reserved.
    const ledger = new RedisLedger({ url: redis.url, keyPrefix: prefix });
    try {
      const snap = await ledger.snapshot('tenant:acme', Date.now());
      expect(snap.reservedMicros).toBe(admittedCents * 10_000);
      expect(snap.openReservations).toBe(allowed.length);

      // Settle every reservation through the other process at half its estimate: reservations released,
      // spend recorded once, and admissions open again for what was freed.
      const settled = await Promise.all(
        allowed.map((a) => post(procs[(a.i + 1) % 2]!, `/v1/admissions/${String(a.json.reservation_id)}/settle`, { actual_cost_usd: (Number(est(a.i)) / 2).toFixed(3), event_id: `two-${a.i}` })),
      );
      expect(settled.every((s) => s.status === 200)).toBe(true);
      const after = await ledger.snapshot('tenant:acme', Date.now());
      expect(after).toMatchObject({ reservedMicros: 0, openReservations: 0 });
      expect(after.dayMicros).toBe(allowed.reduce((s, a) => s + Math.round((Number(est(a.i)) / 2) * 1000) * 1000, 0));
      const again = await post(procs[0]!, '/v1/admissions', { tenant_id: 'acme', run_id: 'r0', task_type: 'eval', estimated_cost_usd: '1.00' });
      expect(again.json.decision).toBe('allow');
    } finally {
      await ledger.close();
    }
  }, 60_000);
});

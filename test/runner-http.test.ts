import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { usdToMicros } from '../rules/index.ts';
import { HttpAdmissionClient, guardrailAdmissionClient, parseSuite, runSuite, type TaskFinalizedEvent } from '../runner/index.ts';
import { makeTestApi, type TestApi } from './helpers/api.ts';
import { freePort } from './helpers/redis.ts';

// The runner's HTTP admission client against the real API app (embedded parts), over a loopback socket.
describe('HttpAdmissionClient against the Forge API', () => {
  let api: TestApi;
  let baseUrl: string;
  let key: string;
  beforeAll(async () => {
    api = await makeTestApi();
    await api.app.listen({ port: 0, host: '127.0.0.1' });
    baseUrl = `http://127.0.0.1:${(api.app.server.address() as AddressInfo).port}`;
    key = api.key(['runner'], 'acme');
  });
  afterAll(async () => {
    await api.close();
  });

  it('reserves, then settles the actual cost into the ledger', async () => {
    const c = new HttpAdmissionClient({ baseUrl, apiKey: key });
    const d = await c.admit({ tenantId: 'acme', runId: 'http-1', taskType: 'eval.test', estimatedCostUsd: '2.50' });
    expect(d).toMatchObject({ decision: 'allow' });
    if (d.decision !== 'allow') return;
    expect(d.expiresAt).toBeGreaterThan(0);
    expect((await api.ledger.snapshot('run:acme/http-1', api.clock.now)).reservedMicros).toBe(2_500_000);
    const at = api.clock.now;
    expect(await c.settle(d.reservationId, { actualCostUsd: '2.25', eventId: 'ev-http-1', finalizedAt: at })).toBe('settled');
    expect(await api.ledger.snapshot('run:acme/http-1', at)).toMatchObject({ reservedMicros: 0, dayMicros: 2_250_000 });
    // A retried settle is harmless.
    expect(await c.settle(d.reservationId, { actualCostUsd: '2.25', eventId: 'ev-http-1', finalizedAt: at })).toBe('unknown');
  });

  it('is denied while the tenant is halted', async () => {
    const c = new HttpAdmissionClient({ baseUrl, apiKey: key });
    await api.bus.publish({ scope: 'tenant:acme', state: 'HARD_STOP', previous: 'NORMAL', seq: 1_000, at: api.clock.now, reason: 'test halt', holds: [], weekMicros: 0 });
    const d = await c.admit({ tenantId: 'acme', runId: 'http-2', taskType: 'eval.test', estimatedCostUsd: '1' });
    expect(d).toMatchObject({ decision: 'deny', state: 'HARD_STOP' });
  });

  it('a wrong key is refused (its own code, not retried); an unreachable API is unavailable (fail closed)', async () => {
    const bad = new HttpAdmissionClient({ baseUrl, apiKey: 'nope' });
    await expect(bad.admit({ tenantId: 'acme', runId: 'x', taskType: 't' })).rejects.toMatchObject({ code: 'FORGE_ERR_API_KEY_REFUSED' });
    const gone = new HttpAdmissionClient({ baseUrl: `http://127.0.0.1:${await freePort()}`, apiKey: key, timeoutMs: 500 });
    await expect(gone.admit({ tenantId: 'acme', runId: 'x', taskType: 't' })).rejects.toMatchObject({ code: 'FORGE_ERR_ADMISSION_UNAVAILABLE' });
  });
});

describe('runSuite through the API guardrail in process (the embedded wiring)', () => {
  it('admits through Guardrail.admit, settles through Guardrail.settle, and stops at the tenant day hard cap', async () => {
    const api = await makeTestApi();
    try {
      // The guardrail's clock is fixed; settle at that time so the spend lands on its day.
      const text = readFileSync(new URL('../config/sample-suite.yaml', import.meta.url), 'utf8').replace(/^seconds_per_hour: .*$/m, 'seconds_per_hour: 0.2');
      const events: TaskFinalizedEvent[] = [];
      const inner = guardrailAdmissionClient(api.guardrail, usdToMicros);
      const admission = { admit: inner.admit, settle: (id: string, s: Parameters<typeof inner.settle>[1]) => inner.settle(id, { ...s, finalizedAt: api.clock.now }) };
      const report = await runSuite({ suite: parseSuite(text), tenantId: 'acme', runId: 'embedded-1', bus: api.bus, admission, events: { emit: async (e) => void events.push(e) }, concurrency: 3 });
      expect(report.outcomes.length).toBeGreaterThan(10);
      expect(report.notStarted.length).toBe(40 - report.outcomes.length);
      // The settle that crosses the band stops the tenant (day_hard), or the ledger refuses the next reservation.
      expect(report.haltedBy?.reason).toMatch(/day hard cap of tenant:acme|finalized: .*day_hard/);
      const snap = await api.ledger.snapshot('tenant:acme', api.clock.now);
      expect(snap).toMatchObject({ reservedMicros: 0, dayMicros: report.totalCostMicros });
      expect(events).toHaveLength(report.outcomes.length);
    } finally {
      await api.close();
    }
  });
});

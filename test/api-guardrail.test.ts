import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { usdToMicros } from '../rules/index.ts';
import { costEvent, makeTestApi, type TestApi } from './helpers/api.ts';

let t: TestApi;
beforeEach(async () => {
  t = await makeTestApi();
});
afterEach(async () => {
  await t.close();
});

const auth = (key: string) => ({ authorization: `Bearer ${key}` });

describe('auth on every route', () => {
  it('no key: 401 with a code; a bad key: 401', async () => {
    const r = await t.app.inject({ method: 'GET', url: '/v1/guardrail/tenant:acme' });
    expect(r.statusCode).toBe(401);
    expect(r.json().error.code).toBe('FORGE_ERR_UNAUTHENTICATED');
    const bad = await t.app.inject({ method: 'GET', url: '/v1/guardrail/tenant:acme', headers: auth('fk_000000000000_' + 'x'.repeat(32)) });
    expect(bad.statusCode).toBe(401);
  });
  it('wrong role: 403 naming the roles needed', async () => {
    const r = await t.app.inject({ method: 'POST', url: '/v1/admissions', headers: auth(t.key(['finance'])), payload: { tenant_id: 'acme', run_id: 'r1', task_type: 'eval' } });
    expect(r.statusCode).toBe(403);
    expect(r.json().error).toMatchObject({ code: 'FORGE_ERR_FORBIDDEN_ROLE' });
  });
  it("another tenant's scope: 403, nothing of it in the body", async () => {
    void t.guardrail.ingest([costEvent({ tenantId: 'acme', totalMicros: usdToMicros(42), eventTime: t.clock.now })]);
    const r = await t.app.inject({ method: 'GET', url: '/v1/guardrail/tenant:acme', headers: auth(t.key(['finance'], 'globex')) });
    expect(r.statusCode).toBe(403);
    expect(r.body).not.toContain('42');
    const g = await t.app.inject({ method: 'GET', url: '/v1/guardrail/global', headers: auth(t.key(['finance'], 'globex')) });
    expect(g.statusCode).toBe(403);
    const list = await t.app.inject({ method: 'GET', url: '/v1/guardrail', headers: auth(t.key(['finance'], 'globex')) });
    expect(list.json().scopes).toEqual([]);
  });
  it('schema violations: 400 naming the field', async () => {
    const k = auth(t.key(['runner']));
    const missing = await t.app.inject({ method: 'POST', url: '/v1/admissions', headers: k, payload: { tenant_id: 'acme', task_type: 'eval' } });
    expect(missing.statusCode).toBe(400);
    expect(missing.json().error).toMatchObject({ code: 'FORGE_ERR_VALIDATION', field: 'run_id' });
    const neg = await t.app.inject({ method: 'POST', url: '/v1/admissions', headers: k, payload: { tenant_id: 'acme', run_id: 'r1', task_type: 'eval', estimated_cost_usd: -1 } });
    expect(neg.json().error.field).toBe('estimated_cost_usd');
    const extra = await t.app.inject({ method: 'POST', url: '/v1/admissions', headers: k, payload: { tenant_id: 'acme', run_id: 'r1', task_type: 'eval', cost: 1 } });
    expect(extra.json().error).toMatchObject({ code: 'FORGE_ERR_VALIDATION', field: 'cost' });
    const scope = await t.app.inject({ method: 'GET', url: '/v1/guardrail/planet:earth', headers: k });
    expect(scope.json().error).toMatchObject({ code: 'FORGE_ERR_VALIDATION', field: 'scope' });
    const json = await t.app.inject({ method: 'POST', url: '/v1/admissions', headers: { ...k, 'content-type': 'application/json' }, payload: '{nope' });
    expect(json.statusCode).toBe(400);
  });
  it('health and docs are public; the OpenAPI document lists the routes', async () => {
    expect((await t.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    const doc = await t.app.inject({ method: 'GET', url: '/docs/json' });
    expect(doc.statusCode).toBe(200);
    expect(Object.keys(doc.json().paths)).toEqual(expect.arrayContaining(['/v1/admissions', '/v1/guardrail/{scope}', '/v1/budgets/{scope}']));
  });
});

describe('guardrail state', () => {
  it('shows state, conditions with value/threshold/top component, spend against every band', async () => {
    void t.guardrail.ingest([costEvent({ tenantId: 'acme', totalMicros: usdToMicros(85), eventTime: t.clock.now })]);
    const r = await t.app.inject({ method: 'GET', url: '/v1/guardrail/tenant:acme', headers: auth(t.key(['oncall'], 'acme')) });
    expect(r.statusCode).toBe(200);
    const v = r.json();
    expect(v.state).toBe('WARNING');
    expect(v.conditions).toEqual([expect.objectContaining({ id: 'day_soft', value: '85', threshold: '80', top_component: 'rli' })]);
    expect(v.bands.day_hard).toEqual({ value_usd: '85', limit_usd: '100', used_ratio: 0.85 });
    expect(v.spend).toMatchObject({ day_usd: '85', week_usd: '85', run_usd: '85', tasks_today: 1 });
  });
  it('the same event_id twice counts once', async () => {
    const e = costEvent({ tenantId: 'acme', totalMicros: usdToMicros(30), eventTime: t.clock.now });
    void t.guardrail.ingest([e]);
    void t.guardrail.ingest([e]);
    const v = (await t.app.inject({ method: 'GET', url: '/v1/guardrail/run:acme%2Fr1', headers: auth(t.key(['runner'], 'acme')) })).json();
    expect(v.spend.day_usd).toBe('30');
  });
});

describe('admissions: reserve, then settle', () => {
  it('1,000 concurrent admissions never admit past cap + one estimate', async () => {
    const k = auth(t.key(['runner'], 'acme'));
    const results = await Promise.all(
      Array.from({ length: 1000 }, () => t.app.inject({ method: 'POST', url: '/v1/admissions', headers: k, payload: { tenant_id: 'acme', run_id: 'r1', task_type: 'eval', estimated_cost_usd: '0.7' } })),
    );
    const allowed = results.filter((r) => r.json().decision === 'allow').length;
    const admitted = allowed * 0.7;
    // Day hard cap of tenant acme is $100: at most one estimate past it.
    expect(admitted).toBeGreaterThanOrEqual(100);
    expect(admitted).toBeLessThanOrEqual(100 + 0.7);
    const denied = results.find((r) => r.json().decision === 'deny')!.json();
    expect(denied).toMatchObject({ decision: 'deny', scope: 'tenant:acme' });
    expect(denied.reason).toMatch(/day hard cap of tenant:acme/);
    expect(denied.retry_after_ms).toBeGreaterThan(0);
  });
  it('settle releases the reservation; expiry releases it and is logged; no false stop is left', async () => {
    const k = auth(t.key(['runner'], 'acme'));
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = (await t.app.inject({ method: 'POST', url: '/v1/admissions', headers: k, payload: { tenant_id: 'acme', run_id: 'r1', task_type: 'eval', estimated_cost_usd: 40 } })).json();
      expect(r.decision).toBe('allow');
      ids.push(r.reservation_id);
    }
    const full = (await t.app.inject({ method: 'POST', url: '/v1/admissions', headers: k, payload: { tenant_id: 'acme', run_id: 'r1', task_type: 'eval', estimated_cost_usd: 1 } })).json();
    expect(full.decision).toBe('deny');
    expect(full.reason).toMatch(/fully reserved/);
    expect(full.retry_after_ms).toBe(1000); // reservations in flight settle or expire: ask again soon
    const s = await t.app.inject({ method: 'POST', url: `/v1/admissions/${ids[0]}/settle`, headers: k, payload: { actual_cost_usd: '12.5', event_id: 'e-settle-1' } });
    expect(s.json()).toEqual({ status: 'settled', reserved_usd: expect.any(String), overrun: false });
    const again = await t.app.inject({ method: 'POST', url: `/v1/admissions/${ids[0]}/settle`, headers: k, payload: { actual_cost_usd: '12.5', event_id: 'e-settle-1' } });
    expect(again.json()).toMatchObject({ status: 'unknown' });
    t.clock.now += 61_000;
    expect(await t.guardrail.expireReservations()).toBe(2);
    expect(t.audit.filter((a) => a.kind === 'reservation_expired')).toHaveLength(2);
    const view = (await t.app.inject({ method: 'GET', url: '/v1/guardrail/tenant:acme', headers: k })).json();
    expect(view.state).toBe('NORMAL');
    expect(view.spend.reserved_usd).toBe('0');
    const after = (await t.app.inject({ method: 'POST', url: '/v1/admissions', headers: k, payload: { tenant_id: 'acme', run_id: 'r1', task_type: 'eval', estimated_cost_usd: 40 } })).json();
    expect(after.decision).toBe('allow');
  });
  it('without an estimate uses the p99 of the task type\'s actual costs, else the unit cap', async () => {
    const k = auth(t.key(['runner'], 'acme'));
    const first = (await t.app.inject({ method: 'POST', url: '/v1/admissions', headers: k, payload: { tenant_id: 'acme', run_id: 'r1', task_type: 'eval' } })).json();
    expect(first).toMatchObject({ decision: 'allow', estimate_source: 'unit_cap', estimated_cost_usd: '200' });
    t.clock.now += 61_000;
    await t.guardrail.expireReservations();
    for (let i = 1; i <= 20; i++) void t.guardrail.ingest([costEvent({ tenantId: 'acme', totalMicros: usdToMicros(i / 10), eventTime: t.clock.now })]);
    // 20 tasks of 0.1 .. 2.0 USD: the p99 is the 20th (ceil(0.99 x 20)), 2.0 USD.
    const p99 = (await t.app.inject({ method: 'POST', url: '/v1/admissions', headers: k, payload: { tenant_id: 'acme', run_id: 'r1', task_type: 'eval' } })).json();
    expect(p99).toMatchObject({ estimate_source: 'learned_p99', estimated_cost_usd: '2' });
  });
  // A run admitted before keeps its scopes and reservation list between admissions: its caps must still
  // follow every budget change and every lift at once.
  it('the caps of a run admitted before follow a budget change at once, both ways', async () => {
    const k = auth(t.key(['runner'], 'acme'));
    const admin = auth(t.key(['admin']));
    const admit = async (usd: string) => (await t.app.inject({ method: 'POST', url: '/v1/admissions', headers: k, payload: { tenant_id: 'acme', run_id: 'r1', task_type: 'eval', estimated_cost_usd: usd } })).json();
    expect(await admit('40')).toMatchObject({ decision: 'allow' });
    const tighten = await t.app.inject({ method: 'PUT', url: '/v1/budgets/tenant:acme', headers: admin, payload: { reason: 'tighten', B_day_soft: 30, B_day_hard: 40 } });
    expect(tighten.statusCode).toBe(200);
    const denied = await admit('1');
    expect(denied).toMatchObject({ decision: 'deny', scope: 'tenant:acme' });
    expect(denied.reason).toMatch(/day hard cap of tenant:acme/);
    const raise = await t.app.inject({ method: 'PUT', url: '/v1/budgets/tenant:acme', headers: admin, payload: { reason: 'raise', B_day_soft: 150, B_day_hard: 200 } });
    expect(raise.statusCode).toBe(200);
    expect(await admit('1')).toMatchObject({ decision: 'allow' });
  });
  it('after a lift, a run admitted before is admitted up to the emergency level, not the waived cap', async () => {
    const k = auth(t.key(['runner'], 'acme'));
    const admit = async (usd: string) => (await t.app.inject({ method: 'POST', url: '/v1/admissions', headers: k, payload: { tenant_id: 'acme', run_id: 'r1', task_type: 'eval', estimated_cost_usd: usd } })).json();
    const first = await admit('1');
    expect(first).toMatchObject({ decision: 'allow' });
    await t.app.inject({ method: 'POST', url: `/v1/admissions/${first.reservation_id}/settle`, headers: k, payload: { actual_cost_usd: '1', event_id: 'lift-e0' } });
    // Another run of the tenant spends the rest: the tenant stops, the run admitted before does not.
    void t.guardrail.ingest([costEvent({ tenantId: 'acme', runId: 'r0', totalMicros: usdToMicros(99), eventTime: t.clock.now })]);
    await t.guardrail.drain();
    expect(await admit('1')).toMatchObject({ decision: 'deny', state: 'HARD_STOP' });
    const lift = await t.app.inject({ method: 'POST', url: '/v1/guardrail/tenant:acme/lift', headers: auth(t.key(['oncall'], 'acme')), payload: { reason: 'finance agreed' } });
    expect(lift.json()).toMatchObject({ waived: ['day_hard'] });
    // Spent 100 of the tenant's day hard cap of 100 (waived now): its cap is the emergency level, 110.
    expect(await admit('5')).toMatchObject({ decision: 'allow' });
    const past = await admit('5');
    expect(past).toMatchObject({ decision: 'allow' });
    expect(await admit('1')).toMatchObject({ decision: 'deny' });
  });
  it('a halted scope denies at once with its state', async () => {
    void t.guardrail.ingest([costEvent({ tenantId: 'acme', totalMicros: usdToMicros(100), eventTime: t.clock.now })]);
    const r = (await t.app.inject({ method: 'POST', url: '/v1/admissions', headers: auth(t.key(['runner'], 'acme')), payload: { tenant_id: 'acme', run_id: 'r2', task_type: 'eval', estimated_cost_usd: 1 } })).json();
    expect(r).toMatchObject({ decision: 'deny', state: 'HARD_STOP', scope: 'tenant:acme', retry_after_ms: null });
  });
});

describe('operator actions', () => {
  it('acknowledge needs oncall; lift needs a reason; both audited and published', async () => {
    const seen: string[] = [];
    t.bus.subscribe((c) => seen.push(`${c.scope}:${c.state}`));
    void t.guardrail.ingest([costEvent({ tenantId: 'acme', totalMicros: usdToMicros(100), eventTime: t.clock.now })]);
    await t.guardrail.drain();
    expect(seen).toContain('tenant:acme:HARD_STOP');
    const oncall = auth(t.key(['oncall'], 'acme'));
    const noReason = await t.app.inject({ method: 'POST', url: '/v1/guardrail/tenant:acme/lift', headers: oncall, payload: {} });
    expect(noReason.json().error).toMatchObject({ code: 'FORGE_ERR_VALIDATION', field: 'reason' });
    const byRunner = await t.app.inject({ method: 'POST', url: '/v1/guardrail/tenant:acme/lift', headers: auth(t.key(['runner'], 'acme')), payload: { reason: 'go on' } });
    expect(byRunner.statusCode).toBe(403);
    const lift = await t.app.inject({ method: 'POST', url: '/v1/guardrail/tenant:acme/lift', headers: oncall, payload: { reason: 'budget raised by finance' } });
    expect(lift.json()).toMatchObject({ scope: 'tenant:acme', state: 'WARNING', waived: ['day_hard'] });
    await t.guardrail.drain();
    expect(seen).toContain('tenant:acme:WARNING');
    expect(t.audit.find((a) => a.kind === 'override')).toMatchObject({ scope: 'tenant:acme', reason: expect.stringContaining('budget raised by finance'), actor: expect.stringContaining('test-oncall') });
    const ack = await t.app.inject({ method: 'POST', url: '/v1/guardrail/tenant:acme/acknowledge', headers: oncall, payload: { reason: 'seen' } });
    expect(ack.json()).toMatchObject({ state: 'WARNING' });
    await t.guardrail.drain();
    expect(t.audit.filter((a) => a.kind === 'acknowledgement')).toHaveLength(1);
    const nothing = await t.app.inject({ method: 'POST', url: '/v1/guardrail/run:acme%2Fzzz/lift', headers: oncall, payload: { reason: 'nothing here' } });
    expect(nothing.statusCode).toBe(409);
  });
});

describe('budgets', () => {
  it('admin changes bands: versioned, audited, effective at once; others may not', async () => {
    const admin = auth(t.key(['admin']));
    const before = (await t.app.inject({ method: 'GET', url: '/v1/budgets/tenant:acme', headers: admin })).json();
    expect(before).toMatchObject({ version: 1, bands: { B_day_hard: '100', emergency_day_usd: '110' } });
    const bad = await t.app.inject({ method: 'PUT', url: '/v1/budgets/tenant:acme', headers: admin, payload: { reason: 'x', B_day_soft: 500 } });
    expect(bad.json().error).toMatchObject({ code: 'FORGE_ERR_VALIDATION' });
    void t.guardrail.ingest([costEvent({ tenantId: 'acme', totalMicros: usdToMicros(60), eventTime: t.clock.now })]);
    const put = await t.app.inject({ method: 'PUT', url: '/v1/budgets/tenant:acme', headers: admin, payload: { reason: 'tighten', B_day_soft: 50, B_day_hard: 70 } });
    expect(put.json()).toMatchObject({ version: 2, bands: { B_day_soft: '50', B_day_hard: '70', B_week_hard: '500' } });
    const v = (await t.app.inject({ method: 'GET', url: '/v1/guardrail/tenant:acme', headers: admin })).json();
    expect(v.state).toBe('WARNING');
    const versions = (await t.app.inject({ method: 'GET', url: '/v1/budgets/tenant:acme/versions', headers: admin })).json();
    expect(versions.versions.map((x: { version: number }) => x.version)).toEqual([1, 2]);
    expect(t.audit.find((a) => a.kind === 'budget_change')).toMatchObject({ scope: 'tenant:acme', reason: 'tighten' });
    const finance = await t.app.inject({ method: 'PUT', url: '/v1/budgets/tenant:acme', headers: auth(t.key(['finance'])), payload: { reason: 'nope', B_day_hard: 1 } });
    expect(finance.statusCode).toBe(403);
  });
  it('keys: admin creates a key that works; a tenant admin cannot mint keys for another tenant', async () => {
    const r = await t.app.inject({ method: 'POST', url: '/v1/keys', headers: auth(t.key(['admin'])), payload: { name: 'ci', roles: ['runner'], tenant_id: 'acme' } });
    expect(r.statusCode).toBe(201);
    const ok = await t.app.inject({ method: 'GET', url: '/v1/guardrail/tenant:acme', headers: auth(r.json().key) });
    expect(ok.statusCode).toBe(200);
    const cross = await t.app.inject({ method: 'POST', url: '/v1/keys', headers: auth(t.key(['admin'], 'acme')), payload: { name: 'x', roles: ['admin'], tenant_id: 'globex' } });
    expect(cross.statusCode).toBe(403);
    // The secret is everything after `fk_<id>_` (it may itself contain '_'): never listed.
    const key = String(r.json().key);
    expect(JSON.stringify(t.keys.list())).not.toContain(key.slice(key.indexOf('_', 3) + 1));
  });
});

describe('admissions when the live ledger (Redis) cannot be reached', () => {
  async function guardrailOn(mode: 'closed' | 'open') {
    const { Guardrail } = await import('../guard/index.ts');
    const { RedisLedger } = await import('../guard/index.ts');
    const { InProcessHaltBus } = await import('../guard/index.ts');
    const { parseBandsConfig } = await import('../rules/index.ts');
    const { TEST_BANDS } = await import('./helpers/api.ts');
    const { freePort } = await import('./helpers/redis.ts');
    // A real Redis client pointed at a loopback port nothing listens on.
    const ledger = new RedisLedger({ url: `redis://127.0.0.1:${await freePort()}`, commandTimeoutMs: 200, onError: () => {} });
    const errors: unknown[] = [];
    const g = new Guardrail({ bands: parseBandsConfig(TEST_BANDS), ledger, bus: new InProcessHaltBus(), now: () => Date.now(), onChange: () => {}, audit: async () => {}, onError: (e) => errors.push(e), reservationTtlMs: 60_000, onLedgerFailure: mode });
    return { g, ledger, errors };
  }

  it('closed (the default): the admission fails with FORGE_ERR_LEDGER_UNAVAILABLE, nothing is admitted', async () => {
    const { g, ledger } = await guardrailOn('closed');
    try {
      await expect(g.admit({ tenantId: 'acme', runId: 'r1', taskType: 'eval', estimatedMicros: 1_000_000 })).rejects.toMatchObject({ code: 'FORGE_ERR_LEDGER_UNAVAILABLE' });
    } finally {
      g.close();
      await ledger.close();
    }
  });

  it('open: admitted unreserved, the outage reported, a halted scope still refused', async () => {
    const { g, ledger, errors } = await guardrailOn('open');
    try {
      const d = await g.admit({ tenantId: 'acme', runId: 'r1', taskType: 'eval', estimatedMicros: 1_000_000 });
      expect(d).toMatchObject({ decision: 'allow', unreserved: true, estimatedMicros: 1_000_000 });
      expect(errors.map((e) => (e as { code?: string }).code)).toContain('FORGE_ERR_LEDGER_UNAVAILABLE');
      // A stop the process knows of is enforced without the ledger.
      void g.ingest([costEvent({ tenantId: 'acme', runId: 'r1', totalMicros: usdToMicros('1000'), eventTime: Date.now() })]);
      expect(await g.admit({ tenantId: 'acme', runId: 'r1', taskType: 'eval', estimatedMicros: 1 })).toMatchObject({ decision: 'deny' });
    } finally {
      g.close();
      await ledger.close();
    }
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { AlertDispatcher, parseAlertsConfig } from '../alerts/index.ts';
import { ConfigError, loadConfig } from '../api/index.ts';
import { ExecutionRate, InProcessHaltBus, IntakeGate, type AuditRecord, type IntakeStatus, type Spike } from '../guard/index.ts';
import type { GuardrailEventRow } from '../store/index.ts';
import { checkPagerDutyEvent, HttpReceiver, pagerDutyOk } from './helpers/http-receiver.ts';

// The intake gate on the in-process bus: two gates (two processes) that see the same spike pause once; a
// cool-down resumes; a restart rebuilds the pauses from the audit rows; the execution-spike page is resolved
// on resume. The HTTP path, Redis and restarts of the real server: test/api-intake-spike.test.ts.

const T0 = Date.UTC(2026, 4, 4, 10, 0, 0);
const SPIKE = { factor: 5, minCount: 20, minTrailing: 10 };
const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

function gate(bus: InProcessHaltBus, clock: { now: number }, rows: AuditRecord[], more: Partial<ConstructorParameters<typeof IntakeGate>[0]> = {}) {
  const pauses: Spike[] = [];
  const resumes: IntakeStatus[] = [];
  const errors: unknown[] = [];
  const g = new IntakeGate({
    bus,
    now: () => clock.now,
    audit: async (r) => {
      rows.push(r);
    },
    onError: (e) => errors.push(e),
    spike: SPIKE,
    onPause: (s) => pauses.push(s),
    onResume: (s) => resumes.push(s),
    ...more,
  });
  closers.push(() => g.close());
  return { g, pauses, resumes, errors };
}

/** A steady hour (one admission a minute) then `burst` admissions in the next minute, through `admit`. */
function steadyThenBurst(clock: { now: number }, admit: (i: number) => void, burst: number): void {
  for (let m = 0; m < 60; m++) {
    clock.now = T0 + m * 60_000;
    admit(m);
  }
  clock.now = T0 + 60 * 60_000;
  for (let i = 0; i < burst; i++) admit(i);
}

const asRows = (recs: AuditRecord[]): GuardrailEventRow[] =>
  recs.map((r) => ({ eventId: r.eventId ?? '', at: r.at, kind: r.kind, scope: r.scope, state: r.state ?? '', previous: r.previous ?? '', seq: r.seq ?? 0, actor: r.actor, reason: r.reason, details: r.details, tenantId: r.scope.slice(7), recordedAt: r.at }));

describe('IntakeGate', () => {
  it('two processes that both see the spike pause the tenant once: one page, one audit row, both refuse', async () => {
    const bus = new InProcessHaltBus();
    closers.push(() => bus.close());
    const clock = { now: T0 };
    const rows: AuditRecord[] = [];
    const a = gate(bus, clock, rows);
    const b = gate(bus, clock, rows);
    // Each process counts its own admissions: the same pattern through both.
    steadyThenBurst(clock, () => {
      a.g.admitted('acme');
      b.g.admitted('acme');
    }, 21);
    await Promise.all([a.g.drain(), b.g.drain()]);
    expect(a.pauses.length + b.pauses.length).toBe(1);
    expect(rows.map((r) => [r.kind, r.seq ?? 0])).toEqual([
      ['intake_pause', 1],
      ['anomaly', 0],
    ]);
    expect(a.g.paused('acme')).toMatchObject({ paused: true, seq: 1, actor: 'forge' });
    expect(b.g.paused('acme')).toMatchObject({ paused: true, seq: 1 });
    expect(a.g.paused('beta')).toBeUndefined();
    expect([...a.errors, ...b.errors]).toEqual([]);
  });

  it('a cool-down resumes an automatic pause (every process hears it); before it, nothing; an operator\'s resume of an open intake is a conflict', async () => {
    const bus = new InProcessHaltBus();
    closers.push(() => bus.close());
    const clock = { now: T0 };
    const rows: AuditRecord[] = [];
    const a = gate(bus, clock, rows, { coolDownMs: 600_000 });
    const b = gate(bus, clock, rows, { coolDownMs: 600_000 });
    steadyThenBurst(clock, () => a.g.admitted('acme'), 21);
    await a.g.drain();
    const since = a.g.status('acme').since;
    clock.now = since + 599_999;
    expect(await a.g.coolDown()).toBe(0);
    clock.now = since + 600_000;
    expect(await a.g.coolDown()).toBe(1);
    expect(b.g.paused('acme')).toBeUndefined();
    expect(a.resumes.map((s) => s.seq)).toEqual([2]);
    expect(b.resumes.map((s) => s.seq)).toEqual([2]);
    expect(rows.filter((r) => r.kind !== 'anomaly').map((r) => [r.kind, r.seq, r.actor])).toEqual([
      ['intake_pause', 1, 'forge'],
      ['intake_resume', 2, 'forge'],
    ]);
    await expect(a.g.resume('acme', 'ann', 'again')).rejects.toMatchObject({ code: 'FORGE_ERR_CONFLICT', field: 'tenant' });
    // The burst that paused it is forgotten: the next admissions are counted afresh.
    for (let i = 0; i < 30; i++) a.g.admitted('acme');
    await a.g.drain();
    expect(a.g.paused('acme')).toBeUndefined();
  });

  it('a restart on an empty bus rebuilds the pauses from the audit rows; the newest seq wins', async () => {
    const rows: AuditRecord[] = [];
    {
      const bus = new InProcessHaltBus();
      const clock = { now: T0 };
      const a = gate(bus, clock, rows);
      steadyThenBurst(clock, (i) => {
        a.g.admitted('acme');
        a.g.admitted(i % 2 === 0 ? 'beta' : 'gamma');
      }, 21);
      await a.g.drain();
      // beta and gamma ran at the steady rate: not paused. A pause of beta by hand is resumed.
      expect(a.g.paused('beta')).toBeUndefined();
      a.g.close();
      await bus.close();
    }
    const restored = asRows(rows);
    restored.push({ ...restored[0]!, kind: 'intake_pause', scope: 'tenant:beta', tenantId: 'beta', seq: 1, eventId: 'intake:beta:1' }, { ...restored[0]!, kind: 'intake_resume', scope: 'tenant:beta', tenantId: 'beta', seq: 2, eventId: 'intake:beta:2' });
    const bus = new InProcessHaltBus();
    closers.push(() => bus.close());
    const b = gate(bus, { now: T0 + 2 * 3_600_000 }, []);
    expect(await b.g.rebuild([...restored].reverse())).toBe(1);
    expect(b.g.paused('acme')).toMatchObject({ seq: 1, actor: 'forge' });
    expect(b.g.paused('beta')).toBeUndefined();
    // The next change goes on from the rebuilt seq.
    await b.g.resume('acme', 'ann (k1)', 'checked');
    expect(b.g.status('acme')).toMatchObject({ paused: false, seq: 2, actor: 'ann (k1)' });
  });

  it('the execution-spike page is resolved when the intake is resumed', async () => {
    const pd = await HttpReceiver.start({ check: ({ json }) => checkPagerDutyEvent(json, 'R0UT1NGKEYresolve0123456789abcde'), ok: pagerDutyOk });
    closers.push(() => pd.close());
    const config = parseAlertsConfig(
      { links: { dashboardUrl: 'https://g.example.test/{scope}', acknowledgeUrl: 'https://a.example.test/{scope}' }, delivery: { maxAttempts: 2, initialBackoffMs: 1, maxBackoffMs: 2, timeoutMs: 2000 }, destinations: { pd: { type: 'pagerduty', routingKey: '${P}', url: `${pd.url}/v2/enqueue` } }, routes: { intake_paused: ['pd'] } },
      { P: 'R0UT1NGKEYresolve0123456789abcde' },
    );
    const d = new AlertDispatcher({ config, logger: { info: () => {}, warn: () => {}, error: () => {} } });
    closers.push(() => d.stop());
    expect((await d.resolveIntakePause('acme')).outcome).toBe('ignored');
    await d.raiseIntakePause({ tenantId: 'acme', subject: 'window:5m', value: 25, threshold: 25, unit: 'count', detail: 'burst', at: T0 });
    const r = await d.resolveIntakePause('acme');
    expect(r.outcome).toBe('dispatched');
    expect(pd.requests.map((x) => (x.json as { event_action: string }).event_action)).toEqual(['trigger', 'resolve']);
    expect(pd.problems()).toEqual([]);
  });
});

describe('ExecutionRate and its configuration', () => {
  it('a restart\'s short history is a short span, not a low rate: no spike before the minimum history, then the rate of what was watched', () => {
    const r = new ExecutionRate({ factor: 5, minCount: 20, minTrailing: 10, minHistoryMs: 30 * 60_000 });
    // Watched from minute 0 at 2 a minute; the burst at minute 20 (history 16 minutes before the window) is not judged.
    for (let m = 0; m < 20; m++) for (let i = 0; i < 2; i++) r.note('acme', T0 + m * 60_000);
    let spike: Spike | undefined;
    for (let i = 0; i < 100 && !spike; i++) spike = r.note('acme', T0 + 20 * 60_000);
    expect(spike).toBeUndefined();
    // At minute 40: the window (36-40) against the 31 minutes watched before it.
    const s2 = new ExecutionRate({ factor: 5, minCount: 20, minTrailing: 10, minHistoryMs: 30 * 60_000 });
    for (let m = 0; m < 40; m++) for (let i = 0; i < 2; i++) s2.note('acme', T0 + m * 60_000);
    for (let i = 0; i < 100 && !spike; i++) spike = s2.note('acme', T0 + 40 * 60_000);
    // Trailing 36 minutes x 2 = 72, 10 a window: 50 at factor 5; the window held 8 steady.
    expect(spike).toMatchObject({ windowCount: 50, trailingCount: 72, expected: 10, trailingSpanMs: 36 * 60_000 });
  });

  it('the window and the trailing period are whole numbers of buckets, else the start fails naming the variable', () => {
    expect(() => loadConfig({ FORGE_SPIKE_WINDOW_MS: '90000' })).toThrow(ConfigError);
    expect(() => loadConfig({ FORGE_SPIKE_WINDOW_MS: '90000' })).toThrow(/FORGE_SPIKE_WINDOW_MS/);
    expect(loadConfig({ FORGE_SPIKE_BUCKET_MS: '30000', FORGE_SPIKE_WINDOW_MS: '90000' }).FORGE_SPIKE_WINDOW_MS).toBe(90_000);
    expect(() => new ExecutionRate({ bucketMs: 60_000, trailingMs: 90_000 })).toThrow(/trailingMs/);
  });
});

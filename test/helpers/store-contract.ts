import { byComponent } from '../../rules/index.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainHash, eventCanonicalBytes, isStoreError, type CostEvent, type LogScope, type Store, type WriterOptions } from '../../store/index.ts';
import { DAY_MS, HOUR_MS, addExpected, emptyExpected, expectedOf, flat, freshTenant, makeEvent, type Expected } from './store-events.ts';

/** One implementation under test: how to open it (again, on the same data) and reach it behind its back. */
export interface StoreUnderTest {
  open(opts?: { writer?: WriterOptions }): Promise<Store>;
  /** Runs raw SQL on the same data, not through the store (tampering). `{db}` is the store's database. */
  sql(query: string): Promise<void>;
  cleanup(): Promise<void>;
}

// A fixed clock: 2025-06-10 15:30 UTC.
const NOW = Date.UTC(2025, 5, 10, 15, 30);
const TODAY = Date.UTC(2025, 5, 10);

function spread(tenantId: string, n: number, over: Partial<CostEvent> = {}, start = 0): CostEvent[] {
  // Event i lands (i % 10) days before today, at hour (i % 15): some older than the 8-day window.
  return Array.from({ length: n }, (_, k) => {
    const i = start + k;
    return makeEvent(i, { tenantId, eventTime: TODAY - (i % 10) * DAY_MS + (i % 15) * HOUR_MS + (i % 60) * 1000, ...over });
  });
}

/**
 * The store contract: every implementation (embedded chdb, a ClickHouse server) must pass it.
 * Each test uses fresh tenant ids (and, where it reads across tenants, its own time window).
 */
export function storeContract(name: string, make: () => Promise<StoreUnderTest>, opts: { skip?: boolean } = {}): void {
  describe.skipIf(opts.skip === true)(`store contract: ${name}`, () => {
    let h: StoreUnderTest;
    let store: Store;

    beforeAll(async () => {
      h = await make();
      store = await h.open({ writer: { flushIntervalMs: 10 } });
    });

    afterAll(async () => {
      await store?.close();
      await h?.cleanup();
    });

    it('totals the log per day, hour, rolling week, ISO week and run, each component in micros', async () => {
      const t = freshTenant();
      const events = spread(t, 300);
      await store.writer.write(events);
      const scope: LogScope = { tenantId: t };

      const inDay = (d: number) => events.filter((e) => e.eventTime >= d && e.eventTime < d + DAY_MS);
      const roll = await store.scopeRollup(scope, NOW);
      expect(roll.days.map((d) => d.day)).toEqual(
        Array.from({ length: 8 }, (_, k) => new Date(TODAY - (7 - k) * DAY_MS).toISOString().slice(0, 10)),
      );
      for (let k = 0; k < 8; k++) {
        const d = TODAY - (7 - k) * DAY_MS;
        expect(flat(roll.days[k]!)).toEqual(expectedOf(inDay(d)));
      }
      // Days 8 and 9 back are outside the 8 days but inside the run.
      expect(flat(roll.run)).toEqual(expectedOf(events));
      expect(flat(roll.week)).toEqual(expectedOf(events.filter((e) => e.eventTime >= TODAY - 6 * DAY_MS)));
      expect(flat(await store.rollingWeekTotal(scope, NOW))).toEqual(
        expectedOf(events.filter((e) => e.eventTime >= TODAY - 6 * DAY_MS && e.eventTime <= NOW)),
      );
      expect(flat(await store.dayTotal(scope, NOW))).toEqual(expectedOf(events.filter((e) => e.eventTime >= TODAY && e.eventTime <= NOW)));

      // Run scope.
      const run1 = events.filter((e) => e.runId === 'run-1');
      expect(flat(await store.cumulativeTotal({ tenantId: t, runId: 'run-1' }, NOW))).toEqual(expectedOf(run1));

      // Hourly: today's hours.
      const hours = await store.hourlyTotals(scope, { from: TODAY, to: TODAY + DAY_MS });
      const byHour = new Map<number, Expected>();
      for (const e of inDay(TODAY)) {
        const hr = Math.floor(e.eventTime / HOUR_MS) * HOUR_MS;
        const acc = byHour.get(hr) ?? emptyExpected();
        addExpected(acc, e);
        byHour.set(hr, acc);
      }
      expect(new Map(hours.map((x) => [x.hour, flat(x)]))).toEqual(byHour);

      // ISO weeks: 2025-06-10 is a Tuesday, so the week starts 2025-06-09.
      const weeks = await store.weeklyTotals(scope, NOW, 3);
      expect(weeks.map((w) => w.weekStart)).toEqual(['2025-05-26', '2025-06-02', '2025-06-09']);
      const monday = Date.UTC(2025, 5, 9);
      expect(flat(weeks[2]!)).toEqual(expectedOf(events.filter((e) => e.eventTime >= monday)));
      expect(weeks.reduce((a, w) => a + w.tasks, 0)).toBe(events.length);
    });

    it('breaks costs down by task type, model, environment; composition; cost per successful task', async () => {
      const t = freshTenant();
      const events = spread(t, 120);
      await store.writer.write(events);
      const scope: LogScope = { tenantId: t };
      const range = { from: TODAY - 20 * DAY_MS, to: NOW + DAY_MS };

      for (const [by, key] of [
        ['task_type', (e: CostEvent) => e.taskType],
        ['model', (e: CostEvent) => e.model],
        ['environment', (e: CostEvent) => e.environment],
        ['status', (e: CostEvent) => e.status],
      ] as const) {
        const rows = await store.breakdown(scope, range, by);
        const want = new Map<string, Expected>();
        for (const e of events) {
          const acc = want.get(key(e)) ?? emptyExpected();
          addExpected(acc, e);
          want.set(key(e), acc);
        }
        expect(new Map(rows.map((r) => [r.key, flat(r)]))).toEqual(want);
        for (let i = 1; i < rows.length; i++) expect(rows[i - 1]!.totalMicros).toBeGreaterThanOrEqual(rows[i]!.totalMicros);
      }

      const all = expectedOf(events);
      const comp = await store.composition(scope, range);
      expect(comp.totalMicros).toBe(all.total);
      expect(comp.components).toEqual(byComponent((k) => all[k]));
      expect(comp.shares.rli).toBeCloseTo(all.rli / all.total, 12);
      const unit = await store.unitEconomics(scope, range);
      expect(unit).toEqual({
        totalMicros: all.total,
        succeeded: all.succeeded,
        tasks: all.tasks,
        costPerSuccessMicros: Math.floor(all.total / all.succeeded),
        costPerTaskMicros: Math.floor(all.total / all.tasks),
      });
      const empty = await store.unitEconomics({ tenantId: freshTenant() }, range);
      expect(empty.costPerSuccessMicros).toBeUndefined();
    });

    it('needs a tenant filter or the explicit all-tenants flag; tenants do not see each other', async () => {
      const a = freshTenant('a');
      const b = freshTenant('b');
      // A time window no other test uses, so the all-tenants sum is exactly a + b.
      const t0 = Date.UTC(2031, 0, 5);
      const ea = Array.from({ length: 20 }, (_, i) => makeEvent(i, { tenantId: a, eventTime: t0 + i * 1000 }));
      const eb = Array.from({ length: 30 }, (_, i) => makeEvent(i, { tenantId: b, eventTime: t0 + i * 1000 }));
      await Promise.all([store.writer.write(ea), store.writer.write(eb)]);
      const range = { from: t0, to: t0 + DAY_MS };
      expect(flat(await store.totals({ tenantId: a }, range))).toEqual(expectedOf(ea));
      expect(flat(await store.totals({ tenantId: b }, range))).toEqual(expectedOf(eb));
      expect(flat(await store.totals({ allTenants: true }, range))).toEqual(expectedOf([...ea, ...eb]));
      const breakdown = await store.breakdown({ allTenants: true }, range, 'tenant_id');
      expect(new Map(breakdown.map((r) => [r.key, r.tasks]))).toEqual(new Map([[b, 30], [a, 20]]));

      for (const bad of [{}, { tenantId: '' }, { tenantId: 'x y' }, { allTenants: false }, { tenantId: a, runId: 'bad run' }]) {
        await expect(store.totals(bad as LogScope, range)).rejects.toSatisfy((e: unknown) => isStoreError(e, 'FORGE_ERR_STORE_INVALID'));
      }
    });

    it('counts an event_id once: duplicates in a write, across writes, concurrent writes, replayed batches', async () => {
      const t = freshTenant();
      const events = spread(t, 50);
      const first = await store.writer.write([...events, events[3]!, events[3]!]);
      expect(first).toMatchObject({ stored: 50, duplicates: 2 });
      // A replayed batch, whole and in part, and the same events from concurrent writers.
      expect(await store.writer.write(events)).toMatchObject({ stored: 0, duplicates: 50 });
      const more = spread(t, 20, {}, 50);
      const receipts = await Promise.all([
        store.writer.write([...events.slice(10, 20), ...more]),
        store.writer.write(more),
        store.writer.write(more.slice(5)),
      ]);
      expect(receipts.reduce((a, r) => a + r.stored, 0)).toBe(20);
      expect(receipts.reduce((a, r) => a + r.duplicates, 0)).toBe(10 + 20 + 15);

      const all = [...events, ...more];
      const scope: LogScope = { tenantId: t };
      expect(flat(await store.cumulativeTotal(scope, NOW + DAY_MS))).toEqual(expectedOf(all));
      const listed = await store.listEvents(scope, { from: 0, to: NOW + DAY_MS });
      expect(listed.length).toBe(70);
      expect(new Set(listed.map((e) => e.eventId)).size).toBe(70);
      // The chain holds each event once: seq 1..70 with no gaps.
      expect(listed.map((e) => e.seq).sort((x, y) => x - y)).toEqual(Array.from({ length: 70 }, (_, i) => i + 1));
      const v = await store.verify({ tenantId: t });
      expect(v).toMatchObject({ ok: true, checked: 70, fromSeq: 1, toSeq: 70 });
    });

    it('keeps every event across a restart; replays after it still count once; the chain continues', async () => {
      const t = freshTenant();
      const events = spread(t, 40);
      await store.writer.write(events);
      const before = await store.verify({ tenantId: t });
      await store.close();
      store = await h.open({ writer: { flushIntervalMs: 10 } });
      expect(store.migrated).toEqual([]);
      expect(flat(await store.cumulativeTotal({ tenantId: t }, NOW + DAY_MS))).toEqual(expectedOf(events));
      // The collector replays its last batches after a restart: nothing doubles.
      expect(await store.writer.write(events.slice(20))).toMatchObject({ stored: 0, duplicates: 20 });
      const later = spread(t, 10, {}, 40);
      expect(await store.writer.write(later)).toMatchObject({ stored: 10, duplicates: 0 });
      expect(flat(await store.cumulativeTotal({ tenantId: t }, NOW + DAY_MS))).toEqual(expectedOf([...events, ...later]));
      const after = await store.verify({ tenantId: t });
      expect(before).toMatchObject({ ok: true, checked: 40 });
      expect(after).toMatchObject({ ok: true, checked: 50, toSeq: 50 });
    });

    it('rejects bad input with an error naming the field, and stores nothing of that write', async () => {
      const t = freshTenant();
      const good = spread(t, 5);
      const cases: Array<[Partial<CostEvent> | Record<string, unknown>, string]> = [
        [{ tenantId: '' }, 'events[2].tenantId'],
        [{ eventId: '' }, 'events[2].eventId'],
        [{ totalMicros: 1 }, 'events[2].totalMicros'],
        [{ gasMicros: -1 }, 'events[2].gasMicros'],
        [{ rliMicros: 1.5 }, 'events[2].rliMicros'],
        [{ status: 'done' }, 'events[2].status'],
        [{ eventTime: -5 }, 'events[2].eventTime'],
        [{ gasUsed: '18446744073709551616' }, 'events[2].gasUsed'],
        [{ gasPriceGwei: '1,5' }, 'events[2].gasPriceGwei'],
        [{ runId: 'a b' }, 'events[2].runId'],
        [{ llmTokens: [{ model: 'm', inputTokens: -1, outputTokens: 0 }] }, 'events[2].llmTokens[0].inputTokens'],
      ];
      for (const [patch, field] of cases) {
        const batch = good.map((e, i) => (i === 2 ? ({ ...e, ...patch } as CostEvent) : e));
        const err = await store.writer.write(batch).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isStoreError(err, 'FORGE_ERR_STORE_INVALID'), `${field}: ${String(err)}`).toBe(true);
        expect((err as { field?: string }).field).toBe(field);
        expect((err as Error).message).toContain(field);
      }
      await store.writer.flush();
      expect((await store.cumulativeTotal({ tenantId: t }, NOW + DAY_MS)).tasks).toBe(0);
      expect(await store.writer.write(good)).toMatchObject({ stored: 5, duplicates: 0 });
    });

    it('verify finds a row changed behind the store’s back (ALTER TABLE UPDATE)', async () => {
      const t = freshTenant();
      const events = spread(t, 30);
      await store.writer.write(events);
      expect(await store.verify({ tenantId: t })).toMatchObject({ ok: true, checked: 30 });
      const target = (await store.listEvents({ tenantId: t }, { from: 0, to: NOW + DAY_MS })).find((e) => e.seq === 17)!;
      await h.sql(`ALTER TABLE {db}.cost_events UPDATE total_micros = total_micros - 1, rli_micros = rli_micros - 1
        WHERE tenant_id = '${t}' AND seq = 17 SETTINGS mutations_sync = 2`);
      const v = await store.verify({ tenantId: t });
      expect(v).toMatchObject({ ok: false, broken: { seq: 17, eventId: target.eventId, reason: 'hash_mismatch' } });
      // A walk that starts after the changed row does not see it; one that covers it does.
      expect(await store.verify({ tenantId: t, fromSeq: 18 })).toMatchObject({ ok: true, checked: 13 });
      expect(await store.verify({ tenantId: t, fromSeq: 10, toSeq: 20 })).toMatchObject({ ok: false, broken: { seq: 17 } });
    });

    it('verify finds a forged row, a re-hashed forged row and a removed row', async () => {
      // Forged row with a made-up hash, inserted straight into the table.
      const t1 = freshTenant();
      await store.writer.write(spread(t1, 10));
      const ev = makeEvent(999, { tenantId: t1, eventTime: TODAY });
      await h.sql(`INSERT INTO {db}.cost_events (tenant_id, seq, event_id, run_id, event_time, ingest_time, status, prev_hash, hash)
        VALUES ('${t1}', 6, '${ev.eventId}', 'run-0', '2025-06-10 00:00:00', '2025-06-10 00:00:00', 'success', '', 'beef')`);
      const v1 = await store.verify({ tenantId: t1 });
      expect(v1.ok).toBe(false);
      if (!v1.ok) {
        expect(v1.broken.seq).toBe(6);
        expect(['duplicate_seq', 'prev_hash_mismatch', 'hash_mismatch']).toContain(v1.broken.reason);
      }

      // A row changed and re-hashed correctly still breaks the next row's link.
      const t2 = freshTenant();
      await store.writer.write(spread(t2, 10));
      await h.sql(`ALTER TABLE {db}.cost_events UPDATE gas_micros = gas_micros + 5, total_micros = total_micros + 5
        WHERE tenant_id = '${t2}' AND seq = 4 SETTINGS mutations_sync = 2`);
      const rows = await store.listEvents({ tenantId: t2 }, { from: 0, to: NOW + DAY_MS });
      const r4 = rows.find((e) => e.seq === 4)!;
      const r3 = await store.verify({ tenantId: t2, toSeq: 3 });
      expect(r3.ok).toBe(true);
      const prev = r3.ok ? r3.headHash : '';
      const forgedHash = chainHash(prev, eventCanonicalBytes(r4));
      await h.sql(`ALTER TABLE {db}.cost_events UPDATE hash = '${forgedHash}' WHERE tenant_id = '${t2}' AND seq = 4 SETTINGS mutations_sync = 2`);
      expect(await store.verify({ tenantId: t2, toSeq: 4 })).toMatchObject({ ok: true });
      expect(await store.verify({ tenantId: t2 })).toMatchObject({ ok: false, broken: { seq: 5, reason: 'prev_hash_mismatch' } });

      // A removed row leaves a gap.
      const t3 = freshTenant();
      await store.writer.write(spread(t3, 10));
      await h.sql(`ALTER TABLE {db}.cost_events DELETE WHERE tenant_id = '${t3}' AND seq = 8 SETTINGS mutations_sync = 2`);
      expect(await store.verify({ tenantId: t3 })).toMatchObject({ ok: false, broken: { seq: 8, reason: 'seq_gap' } });
    });

    it('appends and reads guardrail events and the alert log; counts stop conditions', async () => {
      const t = freshTenant();
      const t0 = Date.UTC(2032, 2, 1);
      await store.appendGuardrailEvents([
        { eventId: `${t}-1`, at: t0, kind: 'state_change', scope: `tenant:${t}`, state: 'WARNING', previous: 'NORMAL', seq: 1, reason: 'day_soft', details: { holds: ['day_soft'] } },
        { eventId: `${t}-2`, at: t0 + 1000, kind: 'acknowledgement', scope: `tenant:${t}`, state: 'WARNING', actor: 'alice', reason: 'on it' },
        { eventId: `${t}-3`, at: t0 + 2000, kind: 'state_change', scope: `run:${t}/r1`, state: 'HARD_STOP', previous: 'NORMAL', seq: 1, reason: 'run_cap' },
        { eventId: `${t}-4`, at: t0 + 3000, kind: 'state_change', scope: 'global', state: 'EMERGENCY_STOP', previous: 'NORMAL', seq: 1, reason: 'day_emergency' },
        { eventId: `${t}-5`, at: t0 + 4000, kind: 'budget_change', scope: `tenant:${t}`, state: '', actor: 'bob', reason: 'raise', details: { B_day_hard: '100' } },
      ]);
      // A replayed append keeps one row.
      await store.appendGuardrailEvents([{ eventId: `${t}-1`, at: t0, kind: 'state_change', scope: `tenant:${t}`, state: 'WARNING', previous: 'NORMAL', seq: 1, reason: 'day_soft', details: { holds: ['day_soft'] } }]);
      const mine = await store.guardrailEvents({ scope: { tenantId: t }, from: t0, to: t0 + DAY_MS });
      expect(mine.map((e) => e.eventId)).toEqual([`${t}-1`, `${t}-2`, `${t}-3`, `${t}-5`]);
      expect(mine[0]).toMatchObject({ kind: 'state_change', scope: `tenant:${t}`, tenantId: t, state: 'WARNING', previous: 'NORMAL', seq: 1, actor: 'forge', details: { holds: ['day_soft'] } });
      expect(mine[1]).toMatchObject({ kind: 'acknowledgement', actor: 'alice', reason: 'on it' });
      const run = await store.guardrailEvents({ scope: { tenantId: t, runId: 'r1' }, from: t0, to: t0 + DAY_MS });
      expect(run.map((e) => e.eventId)).toEqual([`${t}-3`]);
      const acks = await store.guardrailEvents({ scope: { tenantId: t }, from: t0, to: t0 + DAY_MS, kinds: ['acknowledgement', 'budget_change'] });
      expect(acks.map((e) => e.kind)).toEqual(['acknowledgement', 'budget_change']);

      expect(await store.stopConditionCounts(t0, { until: t0 + DAY_MS })).toEqual({ WARNING: 1, HARD_STOP: 1, EMERGENCY_STOP: 1 });
      expect(await store.stopConditionCounts(t0, { until: t0 + DAY_MS, scope: { tenantId: t } })).toEqual({ WARNING: 1, HARD_STOP: 1, EMERGENCY_STOP: 0 });
      expect(await store.stopConditionCounts(t0 + 2500, { until: t0 + DAY_MS })).toEqual({ WARNING: 0, HARD_STOP: 0, EMERGENCY_STOP: 1 });

      await expect(store.appendGuardrailEvents([{ at: t0, kind: 'nope' as 'override', scope: 'global', state: '', reason: '' }])).rejects.toMatchObject({
        code: 'FORGE_ERR_STORE_INVALID',
        field: 'events[0].kind',
      });
      await expect(store.appendGuardrailEvents([{ at: t0, kind: 'override', scope: 'tenant:', state: '', reason: '' }])).rejects.toMatchObject({
        field: 'events[0].scope',
      });

      await store.appendAlerts([
        { alertId: `${t}-a1`, at: t0, channel: 'slack', severity: 'warning', scope: `tenant:${t}`, dedupKey: 'k1', state: 'WARNING', outcome: 'sent', message: 'day soft', details: { status: 200 } },
        { alertId: `${t}-a2`, at: t0 + 10, channel: 'pagerduty', severity: 'critical', scope: `run:${t}/r1`, outcome: 'failed', attempts: 3, message: 'hard stop' },
      ]);
      const alerts = await store.alerts({ scope: { tenantId: t }, from: t0, to: t0 + DAY_MS });
      expect(alerts.map((a) => [a.alertId, a.channel, a.outcome, a.attempts])).toEqual([
        [`${t}-a1`, 'slack', 'sent', 1],
        [`${t}-a2`, 'pagerduty', 'failed', 3],
      ]);
      expect(alerts[0]!.details).toEqual({ status: 200 });
      expect((await store.alerts({ scope: { tenantId: t }, from: t0, to: t0 + DAY_MS, channel: 'pagerduty' })).length).toBe(1);
    });
  });
}

import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { createChdbConnection } from 'chdb/connection';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expandMacros, runPanel, SQL, sqlSource, type PanelQuery, type SqlSource } from '../dashboards/index.ts';
import { openStore, type Store } from '../store/index.ts';
import { FROM, NOW, seedBurn } from './helpers/burn-seed.ts';
import { freshTenant, tempDataDir } from './helpers/store-events.ts';

// Every panel query of the dashboards, expanded exactly as Grafana + the ClickHouse plugin expand it, run
// against the embedded engine holding a hand-checked history (see helpers/burn-seed.ts).

const tmp = tempDataDir('forge-dash-sql');
let store: Store;
let raw: ClickHouseClient;
let src: SqlSource;
const T = freshTenant('dash');
const OTHER = freshTenant('other');

beforeAll(async () => {
  store = await openStore({ dataDir: tmp.dir });
  // A second connection on the same directory (chdb lets them coexist): raw SQL, as Grafana would send it.
  raw = createClient({ connection: createChdbConnection({ path: tmp.dir }) as never });
  src = sqlSource(raw, store.database);
  await seedBurn(store, async (q) => void (await raw.command({ query: q })), T, OTHER);
}, 120_000);

afterAll(async () => {
  await raw?.close();
  await store?.close();
  tmp.remove();
});

/** The panel's SQL as Grafana sends it (variables interpolated in the browser, macros in the plugin). */
async function grafanaRows(q: PanelQuery, o: { run?: string; from?: number; to?: number; tenant?: string } = {}): Promise<Array<Record<string, unknown>>> {
  const text = expandMacros(q.sql, {
    from: o.from ?? FROM,
    to: o.to ?? NOW,
    vars: { database: store.database, tenant: o.tenant ?? T, run: o.run === undefined ? { allValue: "'__all__'" } : o.run },
  });
  expect(text).not.toMatch(/\$__|\$\{/);
  const rs = await raw.query({ query: text, format: 'JSONEachRow' });
  const rows = await rs.json<Record<string, unknown>>();
  for (const r of rows) expect(Object.keys(r)).toEqual(q.columns);
  return rows;
}

const num = (v: unknown): number => Number(v);
const close = (a: unknown, b: number): void => expect(num(a)).toBeCloseTo(b, 9);

describe('daily burn queries', () => {
  it('daily totals: one row per UTC day of the range, zero-filled, each event once (FINAL)', async () => {
    const rows = await grafanaRows(SQL.dailyBurn);
    expect(rows.map((r) => r.time)).toEqual(['2026-03-01', '2026-03-02', '2026-03-03', '2026-03-04', '2026-03-05', '2026-03-06', '2026-03-07', '2026-03-08', '2026-03-09', '2026-03-10']);
    const byDay = Object.fromEntries(rows.map((r) => [String(r.time), num(r.total_usd)]));
    // e1 + e2 (e2 at 23:59:59.999 stays on the 2nd); e3 at midnight opens the 5th; e4 on the 10th; e6 is after `to`.
    expect(byDay['2026-03-02']).toBeCloseTo(4.01, 9);
    expect(byDay['2026-03-05']).toBeCloseTo(3.5, 9);
    expect(byDay['2026-03-10']).toBeCloseTo(1.234567, 9);
    expect(byDay['2026-03-01']).toBe(0);
    expect(rows.reduce((s, r) => s + num(r.total_usd), 0)).toBeCloseTo(8.744567, 9);
  });

  it('the duplicate row is really in the table: without FINAL the 5th would count e3 twice', async () => {
    const text = expandMacros(SQL.dailyBurn.sql.replace(' FINAL', ''), { from: FROM, to: NOW, vars: { database: store.database, tenant: T, run: { allValue: "'__all__'" } } });
    const rows = await (await raw.query({ query: text, format: 'JSONEachRow' })).json<Record<string, unknown>>();
    expect(num(rows.find((r) => r.time === '2026-03-05')?.total_usd)).toBeCloseTo(7, 9);
  });

  it('daily totals of one run; another tenant never shows', async () => {
    const r1 = await grafanaRows(SQL.dailyBurn, { run: 'r1' });
    close(r1.find((r) => r.time === '2026-03-02')?.total_usd, 2);
    const other = await grafanaRows(SQL.dailyBurn, { tenant: OTHER });
    expect(other.reduce((s, r) => s + num(r.total_usd), 0)).toBeCloseTo(7, 9);
  });

  it('composition by component per day', async () => {
    const rows = await grafanaRows(SQL.composition);
    const d2 = rows.find((r) => r.time === '2026-03-02');
    close(d2?.rli, 3);
    close(d2?.gas, 0.26);
    close(d2?.compute, 0.5);
    close(d2?.storage, 0.05);
    close(d2?.llm, 0.2);
    const d10 = rows.find((r) => r.time === '2026-03-10');
    close(d10?.compute, 1.234567);
    close(d10?.rli, 0);
  });

  it('unit economics per UTC day: USD per accepted task and per successful task (failed spend included), zero-filled', async () => {
    const rows = await grafanaRows(SQL.unitEconomics);
    expect(rows).toHaveLength(10);
    const byDay = Object.fromEntries(rows.map((r) => [String(r.time), r]));
    // The 2nd: e1 (success, 2.00) and e2 (failed, 2.01).
    const d2 = byDay['2026-03-02'];
    expect([num(d2?.operations), num(d2?.succeeded)]).toEqual([2, 1]);
    close(d2?.total_usd, 4.01);
    close(d2?.usd_per_accepted_task, 4.01 / 2);
    close(d2?.usd_per_successful_task, 4.01);
    // The 5th: e3 once (FINAL), a success.
    close(byDay['2026-03-05']?.usd_per_accepted_task, 3.5);
    close(byDay['2026-03-05']?.usd_per_successful_task, 3.5);
    // The 10th: e4 was retried, so no successful task: no ratio, not a division by zero.
    close(byDay['2026-03-10']?.usd_per_accepted_task, 1.234567);
    expect(byDay['2026-03-10']?.usd_per_successful_task).toBeNull();
    // A day without tasks: zero counts and no ratios.
    expect([num(byDay['2026-03-01']?.operations), byDay['2026-03-01']?.usd_per_accepted_task, byDay['2026-03-01']?.usd_per_successful_task]).toEqual([0, null, null]);
    const r2 = (await grafanaRows(SQL.unitEconomics, { run: 'r2' })).find((r) => r.time === '2026-03-02');
    expect(num(r2?.operations)).toBe(1);
    close(r2?.usd_per_accepted_task, 2.01);
    expect(r2?.usd_per_successful_task).toBeNull();
    const none = await grafanaRows(SQL.unitEconomics, { tenant: freshTenant('empty') });
    expect(none.every((r) => num(r.operations) === 0 && r.usd_per_accepted_task === null)).toBe(true);
  });

  it('stop conditions in the 24 h before the range end: escalations only, the tenant only', async () => {
    const [s] = await grafanaRows(SQL.stopConditions24h);
    expect([num(s?.warning), num(s?.hard_stop), num(s?.emergency_stop)]).toEqual([1, 1, 0]);
    const [r1] = await grafanaRows(SQL.stopConditions24h, { run: 'r1' });
    expect([num(r1?.warning), num(r1?.hard_stop), num(r1?.emergency_stop)]).toEqual([0, 1, 0]);
    // An hour later the WARNING at NOW-1h is still in, and 24 h later nothing is.
    const [later] = await grafanaRows(SQL.stopConditions24h, { to: NOW + 24 * 3_600_000 });
    expect([num(later?.warning), num(later?.hard_stop), num(later?.emergency_stop)]).toEqual([0, 0, 0]);
  });

  it('recent stop conditions: escalations in the range, newest first', async () => {
    const rows = await grafanaRows(SQL.recentStops);
    expect(rows.map((r) => [r.scope, r.previous, r.state])).toEqual([
      [`tenant:${T}`, 'NORMAL', 'WARNING'],
      [`run:${T}/r1`, 'WARNING', 'HARD_STOP'],
      [`tenant:${T}`, 'NORMAL', 'EMERGENCY_STOP'],
    ]);
  });
});

describe('weekly burn queries', () => {
  it('ISO weeks (Monday, UTC)', async () => {
    const rows = await grafanaRows(SQL.weeklyBurn);
    expect(rows.map((r) => r.time)).toEqual(['2026-03-02', '2026-03-09']);
    close(rows[0]?.total_usd, 7.51);
    close(rows[1]?.total_usd, 1.234567);
  });

  it('rolling 7-day burn per day, counting the days before the range, with its 7-day average', async () => {
    const rows = await grafanaRows(SQL.rollingWeek);
    const expected: Record<string, number> = {
      '2026-03-01': 9,
      '2026-03-02': 13.01,
      '2026-03-03': 13.01,
      '2026-03-04': 13.01,
      '2026-03-05': 16.51,
      '2026-03-06': 16.51,
      '2026-03-07': 7.51,
      '2026-03-08': 7.51,
      '2026-03-09': 3.5,
      '2026-03-10': 4.734567,
    };
    expect(rows.map((r) => r.time)).toEqual(Object.keys(expected));
    for (const r of rows) {
      close(r.rolling_7d_usd, expected[String(r.time)] as number);
      close(r.avg_7d_usd, (expected[String(r.time)] as number) / 7);
    }
  });

  it('runway inputs: cumulative spend up to the range end and the rolling 7 days ending then', async () => {
    const [r] = await grafanaRows(SQL.runwayInputs);
    close(r?.run_spend_usd, 17.744567);
    close(r?.week_usd, 4.734567);
    close(r?.avg_day_usd, 4.734567 / 7);
  });

  it('efficiency by task type, model and environment', async () => {
    const tt = await grafanaRows(SQL.efficiencyByTaskType);
    expect(tt.map((r) => r.task_type)).toEqual(['eval', 'agent']);
    expect([num(tt[0]?.operations), num(tt[0]?.succeeded)]).toEqual([3, 2]);
    close(tt[0]?.success_rate, 2 / 3);
    close(tt[0]?.total_usd, 6.734567);
    close(tt[0]?.cost_per_operation_usd, 6.734567 / 3);
    close(tt[0]?.cost_per_success_usd, 6.734567 / 2);
    expect(tt[1]?.cost_per_success_usd).toBeNull();
    const m = await grafanaRows(SQL.efficiencyByModel);
    expect(m.map((r) => [r.model_name, num(r.operations)])).toEqual([
      ['gpt-4o', 2],
      ['(none)', 1],
      ['claude', 1],
    ]);
    close(m[0]?.total_usd, 5.5);
    const env = await grafanaRows(SQL.efficiencyByEnvironment);
    expect(env.map((r) => r.environment)).toEqual(['prod', 'staging']);
    close(env[1]?.total_usd, 2.01);
  });
});

describe('the burn page runs the same queries with bound parameters', () => {
  it('gives the same rows as the Grafana expansion for every panel query', async () => {
    for (const q of Object.values(SQL)) {
      for (const run of [undefined, 'r1']) {
        const viaGrafana = await grafanaRows(q, run === undefined ? {} : { run });
        const viaEngine = await runPanel(src, q, { tenant: T, run, from: FROM, to: NOW });
        expect(viaEngine, `${q.id} run=${run}`).toEqual(viaGrafana);
      }
    }
  });

  it('a tenant id is a parameter, never SQL text', async () => {
    await expect(runPanel(src, SQL.dailyBurn, { tenant: "x' OR 1=1 --", from: FROM, to: NOW })).rejects.toThrow(/tenant/);
  });
});

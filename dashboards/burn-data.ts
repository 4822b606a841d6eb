import type { ClickHouseClient } from '@clickhouse/client';
import { byComponent, DAY_MS, dayOf, microsToUsdNumber, type Component } from '../rules/index.ts';
import { COMPONENT_VIEW } from './grafana.ts';
import { expandForEngine } from './macros.ts';
import { SQL, type PanelQuery } from './sql.ts';

/**
 * Where the burn page reads the event log: the store's database and a way to run one read-only query
 * with `{name:Type}` parameters. `sqlSource(client, database)` adapts an @clickhouse/client client (the
 * embedded chdb connection or a server); a store that exposes `query` can be passed as is.
 */
export interface SqlSource {
  readonly database: string;
  query(sql: string, params: Record<string, string>): Promise<Array<Record<string, unknown>>>;
}

export function sqlSource(client: Pick<ClickHouseClient, 'query'>, database: string): SqlSource {
  return {
    database,
    async query(sql, params) {
      const rs = await client.query({ query: sql, query_params: params, format: 'JSONEachRow' });
      return rs.json<Record<string, unknown>>();
    },
  };
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
export const TENANT_RE = /^[A-Za-z0-9._-]{1,64}$/;
export const RUN_RE = /^[A-Za-z0-9._:-]{1,128}$/;

export interface PanelParams {
  tenant: string;
  /** One run of the tenant, or undefined for all of them. */
  run?: string | undefined;
  /** Range, epoch ms. */
  from: number;
  to: number;
}

/** Runs one dashboard query on the engine, exactly as Grafana would send it but with bound parameters. */
export async function runPanel(src: SqlSource, q: PanelQuery, p: PanelParams): Promise<Array<Record<string, unknown>>> {
  if (!IDENT.test(src.database)) throw new Error(`database must be a plain identifier, got ${JSON.stringify(src.database)}`);
  if (!TENANT_RE.test(p.tenant)) throw new Error('tenant must be 1-64 letters, digits or ._-');
  if (p.run !== undefined && !RUN_RE.test(p.run)) throw new Error('run must be 1-128 letters, digits or ._:-');
  const { query, params } = expandForEngine(q.sql, {
    from: p.from,
    to: p.to,
    vars: { database: src.database },
    bind: { tenant: p.tenant, run: p.run ?? '__all__' },
  });
  return src.query(query, params);
}

/** Band values of a scope, integer USD micros (rules' Bands). */
export interface BandsMicros {
  daySoft: number;
  dayHard: number;
  weekSoft: number;
  weekHard: number;
  runCap: number;
  unitCap: number;
}

export interface BurnData {
  tenant: string;
  run: string | null;
  /** The scope the bands and runway are for: `tenant:<id>` or `run:<tenant>/<run>`. */
  scope: string;
  /** Range of the daily chart, epoch ms: 30 UTC days ending now. */
  from: number;
  to: number;
  /** Guardrail state of each scope the caller may see (global only for an all-tenants key). */
  states: Array<{ scope: string; state: string }>;
  /** The scope's bands, USD. */
  bands: { daySoftUsd: number; dayHardUsd: number; weekSoftUsd: number; weekHardUsd: number; runCapUsd: number; unitCapUsd: number };
  daily: Array<{ day: string; totalUsd: number }>;
  /** The cost components (COMPONENTS order) with their label and colour, for drawing `composition`. */
  components: Array<{ key: Component; label: string; colour: string }>;
  /** Per UTC day, USD per component (one key per entry of `components`). */
  composition: Array<{ day: string } & Record<Component, number>>;
  unit: { operations: number; succeeded: number; totalUsd: number; costPerOperationUsd: number | null; costPerSuccessUsd: number | null };
  runway: { runSpendUsd: number; weekUsd: number; avgDayUsd: number; remainingUsd: number; days: number | null };
  stopConditions24h: { warning: number; hardStop: number; emergencyStop: number };
  recentStops: Array<{ time: string; scope: string; previous: string; state: string; reason: string }>;
}

const n = (v: unknown): number => (v === null || v === undefined ? 0 : Number(v));
const usd = microsToUsdNumber;

/**
 * Everything the burn page shows for one tenant (optionally one run), from the dashboards' own queries:
 * daily burn and composition over the 30 UTC days ending `now`, unit economics over those days, runway
 * inputs up to now, stop conditions in the last 24 h, and the latest escalations in the range.
 */
export async function burnData(
  src: SqlSource,
  opts: { tenant: string; run?: string | undefined; now: number; states: Array<{ scope: string; state: string }>; bands: BandsMicros },
): Promise<BurnData> {
  // The panels' $__timeFilter bounds are whole seconds (as in Grafana's ClickHouse plugin): round `to` up so
  // an event of the current second is in.
  const to = Math.ceil(opts.now / 1000) * 1000;
  const from = (dayOf(opts.now) - 29) * DAY_MS;
  const p: PanelParams = { tenant: opts.tenant, run: opts.run, from, to };
  const [daily, composition, unit, runway, stops, recent] = await Promise.all([
    runPanel(src, SQL.dailyBurn, p),
    runPanel(src, SQL.composition, p),
    runPanel(src, SQL.unitEconomics, p),
    runPanel(src, SQL.runwayInputs, p),
    runPanel(src, SQL.stopConditions24h, p),
    runPanel(src, SQL.recentStops, p),
  ]);
  // The unit-economics trend per day summed over the range: counts exactly, money in integer micros.
  const operations = unit.reduce((a, d) => a + n(d.operations), 0);
  const succeeded = unit.reduce((a, d) => a + n(d.succeeded), 0);
  const totalMicros = unit.reduce((a, d) => a + Math.round(n(d.total_usd) * 1e6), 0);
  const r = runway[0] ?? {};
  const s = stops[0] ?? {};
  const b = opts.bands;
  const runSpendUsd = n(r.run_spend_usd);
  const avgDayUsd = n(r.avg_day_usd);
  const remainingUsd = Math.max(0, usd(b.runCap) - runSpendUsd);
  return {
    tenant: opts.tenant,
    run: opts.run ?? null,
    scope: opts.run === undefined ? `tenant:${opts.tenant}` : `run:${opts.tenant}/${opts.run}`,
    from,
    to,
    states: opts.states,
    bands: {
      daySoftUsd: usd(b.daySoft),
      dayHardUsd: usd(b.dayHard),
      weekSoftUsd: usd(b.weekSoft),
      weekHardUsd: usd(b.weekHard),
      runCapUsd: usd(b.runCap),
      unitCapUsd: usd(b.unitCap),
    },
    daily: daily.map((d) => ({ day: String(d.time), totalUsd: n(d.total_usd) })),
    components: COMPONENT_VIEW.map((c) => ({ key: c.key, label: c.label, colour: c.hex })),
    composition: composition.map((d) => ({ day: String(d.time), ...byComponent((k) => n(d[k])) })),
    unit: {
      operations,
      succeeded,
      totalUsd: usd(totalMicros),
      costPerOperationUsd: operations > 0 ? totalMicros / operations / 1e6 : null,
      costPerSuccessUsd: succeeded > 0 ? totalMicros / succeeded / 1e6 : null,
    },
    runway: {
      runSpendUsd,
      weekUsd: n(r.week_usd),
      avgDayUsd,
      remainingUsd,
      // Nothing burnt in 7 days: no projection (the page shows "no recent burn").
      days: avgDayUsd > 0 ? remainingUsd / avgDayUsd : null,
    },
    stopConditions24h: { warning: n(s.warning), hardStop: n(s.hard_stop), emergencyStop: n(s.emergency_stop) },
    recentStops: recent.map((x) => ({ time: String(x.time), scope: String(x.scope), previous: String(x.previous), state: String(x.state), reason: String(x.reason) })),
  };
}

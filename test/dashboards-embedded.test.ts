import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { startForge, type RunningForge } from '../cli/forge-process.ts';
import { expandPlatformPromql, expandPromql, interpolateVariables, PROMQL, REPORT_API, PROMETHEUS, TENANT_VARIABLE_QUERY, type VarValue } from '../dashboards/index.ts';
import { COMPONENTS, stateRank } from '../rules/index.ts';
import { runnerConfigFromEnv, startRunner, type StartedRunner } from '../runner/index.ts';
import { eventComponents, type CostEvent, type GuardrailEventRow } from '../store/index.ts';
import { startPrometheusWithRules, type LocalService } from './helpers/alertmanager.ts';
import { freshPrefix, startRedis, type RedisServer } from './helpers/redis.ts';

// The embedded default's Grafana, query by query: every panel target (and variable query) of the generated
// grafana/embedded/dashboards/*.json runs against the data source it is provisioned with
// (grafana/embedded/provisioning): Infinity targets as the exact HTTP request the plugin makes to a
// running Forge (embedded store, cost events ingested), Prometheus targets against a real Prometheus
// running the shipped scrape config over that Forge and a runner. Panels come from the JSON, so a panel
// added without a working query (or without an expectation here) fails.

const root = join(import.meta.dirname, '..');
const DAY = 86_400_000;
const TENANT = 'acme';
const BANDS = { B_day_soft: 5, B_day_hard: 100, B_week_soft: 400, B_week_hard: 500, B_run_cap: 1000, B_unit_cap: 50 };

let dir: string;
let redis: RedisServer;
let forge: RunningForge;
let runner: StartedRunner;
let prom: LocalService;
let grafanaKey: string;
let otherKey: string;
let events: CostEvent[];
let escalations: GuardrailEventRow[];
const logged: string[] = [];
let now: number;
let today: number;

interface Target {
  refId: string;
  datasource?: { type: string; uid: string };
  expr?: string;
  instant?: boolean;
  range?: boolean;
  url?: string;
  url_options?: { method: string; params: Array<{ key: string; value: string }> };
  root_selector?: string;
  columns?: Array<{ selector: string; text: string; type: string }>;
}
interface Panel {
  title: string;
  datasource?: { type: string; uid: string };
  targets?: Target[];
}
interface Variable {
  name: string;
  type: string;
  datasource?: { type: string; uid: string };
  query?: { queryType?: string; infinityQuery?: Target; query?: string };
  allValue?: string;
}
interface Dash {
  uid: string;
  time: { from: string; to: string };
  panels: Panel[];
  templating?: { list: Variable[] };
}
interface Datasource {
  uid: string;
  type: string;
  url: string;
  jsonData?: { auth_method?: string; allowedHosts?: string[] };
  secureJsonData?: { bearerToken?: string };
}

const dashboards = (): Dash[] =>
  readdirSync(join(root, 'grafana/embedded/dashboards'))
    .filter((f) => f.endsWith('.json'))
    .map((f) => JSON.parse(readFileSync(join(root, 'grafana/embedded/dashboards', f), 'utf8')) as Dash);

/** The provisioned datasources with ${VAR} filled from Grafana's environment, as Grafana reads the file. */
function provisioned(env: Record<string, string>): Map<string, Datasource> {
  const text = readFileSync(join(root, 'grafana/embedded/provisioning/datasources/forge.yaml'), 'utf8').replace(/\$\{(\w+)\}/g, (_m, name: string) => {
    if (!(name in env)) throw new Error(`provisioning needs ${name}`);
    return env[name] as string;
  });
  return new Map((parse(text) as { datasources: Datasource[] }).datasources.map((d) => [d.uid, d]));
}

const ev = (id: string, at: number, run: string, type: string, extra: Record<string, unknown>, tenant = TENANT) => ({
  event_id: id, tenant_id: tenant, run_id: run, task_id: id, task_type: type, environment: 'cpu', status: 'success', finalized_at: new Date(at).toISOString(), rli_eval_usd: '0', task_hours: '0', ...extra,
});

beforeAll(async () => {
  // Today's events go 60 s back: just after UTC midnight, wait until they fall on the same day.
  if (Date.now() % DAY < 120_000) await new Promise((r) => setTimeout(r, 120_000 - (Date.now() % DAY)));
  now = Date.now();
  today = Math.floor(now / DAY) * DAY;
  dir = mkdtempSync(join(tmpdir(), 'forge-embedded-grafana-'));
  const bands = Object.entries(BANDS).map(([k, v]) => `    ${k}: ${v}`).join('\n');
  writeFileSync(join(dir, 'bands.yaml'), `global:\n  B_day_soft: 1000000\n  B_day_hard: 1000000\n  B_week_soft: 1000000\n  B_week_hard: 1000000\n  B_run_cap: 1000000\n  B_unit_cap: 1000\ntenants:\n  ${TENANT}:\n${bands}\n  other: {}\n`);
  // No storage allocation: each event's total is its fee, compute and tokens (hand-checkable).
  writeFileSync(
    join(dir, 'pricing.yaml'),
    'compute:\n  environments:\n    cpu: "0.40"\nstorage:\n  gb_stored: "0"\n  gb_month_usd: "0"\n  expected_tasks_day: 1\nllm:\n  models:\n    gpt-4o-mini: { input_per_mtok_usd: "0.15", output_per_mtok_usd: "0.60" }\nnative_price:\n  source: fixed\n  usd: "2500"\n',
  );
  // The embedded default: store in the process (FORGE_DATA_DIR), no Redis, no ClickHouse server.
  forge = await startForge({
    env: { FORGE_DATA_DIR: join(dir, 'data'), FORGE_PORT: '0', FORGE_HOST: '127.0.0.1', FORGE_BUDGETS_FILE: join(dir, 'bands.yaml'), FORGE_PRICING_FILE: join(dir, 'pricing.yaml'), FORGE_LOG_LEVEL: 'silent' },
    log: (l) => logged.push(l),
  });
  const admin = (await forge.keys.create({ name: 'admin', roles: ['admin'], tenantId: null })).key;
  grafanaKey = (await forge.keys.create({ name: 'grafana', roles: ['finance'], tenantId: null })).key;
  otherKey = (await forge.keys.create({ name: 'other-finance', roles: ['finance'], tenantId: 'other' })).key;
  const promKey = (await forge.keys.create({ name: 'prometheus', roles: ['auditor'], tenantId: null })).key;
  const runnerKey = (await forge.keys.create({ name: 'runner', roles: ['runner'], tenantId: TENANT })).key;

  const r = await fetch(`${forge.url}/v1/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` },
    body: JSON.stringify({
      events: [
        ev('a1', now - 60_000, 'r1', 'eval', { rli_eval_usd: '3' }),
        ev('a2', now - 50_000, 'r1', 'eval', { rli_eval_usd: '2.5', status: 'failed' }), // today 5.5 >= B_day_soft: WARNING
        ev('a3', now - 40_000, 'r2', 'submit', { rli_eval_usd: '1', task_hours: '1', model: 'gpt-4o-mini', llm: [{ model: 'gpt-4o-mini', input_tokens: 1_000_000, output_tokens: 0 }] }),
        ev('a4', today - DAY + 10 * 3_600_000, 'r1', 'eval', { rli_eval_usd: '4' }),
        ev('a5', today - 3 * DAY + 10 * 3_600_000, 'r2', 'submit', { rli_eval_usd: '2', task_hours: '5', status: 'failed' }),
        ev('a6', today - 20 * DAY + 10 * 3_600_000, 'r3', 'eval', { rli_eval_usd: '7' }),
        ev('o1', now - 30_000, 'r1', 'eval', { rli_eval_usd: '50' }, 'other'),
      ],
    }),
  });
  expect(r.status, await r.text()).toBe(200);
  await forge.guardrail.drain();
  events = await forge.store.listEvents({ tenantId: TENANT }, { from: 0, to: now + DAY });
  expect(events).toHaveLength(6);
  const rank = ['NORMAL', 'WARNING', 'HARD_STOP', 'EMERGENCY_STOP'];
  escalations = (await forge.store.guardrailEvents({ scope: { tenantId: TENANT }, from: 0, to: now + DAY, kinds: ['state_change'] })).filter((e) => rank.indexOf(e.state) > rank.indexOf(e.previous) && e.state !== 'NORMAL');
  expect(escalations.map((e) => e.scope)).toContain(`tenant:${TENANT}`);
  expect(forge.guardrail.effectiveState(`tenant:${TENANT}`)).toBe('HARD_STOP');
  // The panels' range ends on a whole second (the ClickHouse plugin's macros): let the escalations' second pass.
  const last = Math.max(...escalations.map((e) => e.at));
  await new Promise((r) => setTimeout(r, Math.max(0, last + 1100 - Date.now())));

  redis = await startRedis();
  const prefix = freshPrefix('emb');
  runner = await startRunner(
    runnerConfigFromEnv({
      FORGE_REDIS_URL: redis.url, FORGE_REDIS_PREFIX: prefix, FORGE_API_URL: forge.url, FORGE_API_KEY: runnerKey, FORGE_RUNNER_QUEUE: `q-${prefix.replace(/:/g, '')}`,
      FORGE_RUNNER_CONCURRENCY: '2', FORGE_RUNNER_METRICS_PORT: '0', FORGE_RUNNER_BEAT_MS: '200', FORGE_PRICING_FILE: join(dir, 'pricing.yaml'),
    }),
    { onError: (e, where) => logged.push(`${where}: ${String(e)}`) },
  );

  // The shipped scrape config (alerts/prometheus/prometheus.yml), with this test's targets, key file and a
  // 1 s interval, and the retention flag it documents.
  const shipped = readFileSync(join(root, 'alerts/prometheus/prometheus.yml'), 'utf8');
  const retention = /--storage\.tsdb\.retention\.time=\S+/.exec(shipped)?.[0];
  expect(retention).toBe('--storage.tsdb.retention.time=35d');
  const host = (u: string) => new URL(u).host;
  const config = (d: string) =>
    shipped
      .replace(/(scrape|evaluation)_interval: 15s/g, '$1_interval: 1s')
      .replace('credentials_file: /etc/prometheus/forge-key', `credentials_file: ${join(d, 'forge-key')}`)
      .replace("targets: ['127.0.0.1:8080']", `targets: ['${host(forge.url)}']`)
      .replace("targets: ['127.0.0.1:9464']", `targets: ['${host(runner.metrics.url!)}']`);
  const rules = (f: string) => readFileSync(join(root, 'alerts/prometheus', f), 'utf8');
  prom = await startPrometheusWithRules(config, { 'forge-key': promKey, 'forge-alerts.rules.yml': rules('forge-alerts.rules.yml'), 'forge-platform.rules.yml': rules('forge-platform.rules.yml') }, [retention!]);
}, 300_000);

afterAll(async () => {
  await prom?.stop();
  await runner?.close({ abort: true });
  await forge?.close();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  expect(logged, 'background errors').toEqual([]);
});

// ---- What each panel query must return for the ingested events (computed here from the events, in micros).

type Row = Record<string, string | number | null>;
interface Ctx {
  /** The tenant's events of the selected run (all runs when undefined). */
  evs: CostEvent[];
  run: string | undefined;
  /** The range as the queries bound it: whole seconds (as the ClickHouse plugin's macros do), epoch ms. */
  from: number;
  to: number;
}
const usd = (micros: number): number => micros / 1e6;
const sum = (xs: CostEvent[]): number => xs.reduce((a, e) => a + e.totalMicros, 0);
const dayOf = (t: number): number => Math.floor(t / DAY) * DAY;
const inRange = (c: Ctx) => c.evs.filter((e) => e.eventTime >= c.from && e.eventTime <= c.to);
const daysOf = (c: Ctx): number[] => {
  const out: number[] = [];
  for (let d = dayOf(c.from); d <= dayOf(c.to); d += DAY) out.push(d);
  return out;
};
const ratio = (micros: number, n: number): number | null => (n === 0 ? null : usd(micros) / n);
const mondayOf = (t: number): number => dayOf(t) - (((new Date(t).getUTCDay() + 6) % 7) * DAY);

function unitRow(xs: CostEvent[]): { operations: number; succeeded: number; total_usd: number } {
  return { operations: xs.length, succeeded: xs.filter((e) => e.status === 'success').length, total_usd: usd(sum(xs)) };
}

function efficiency(key: string, keyOf: (e: CostEvent) => string) {
  return (c: Ctx): Row[] => {
    const groups = new Map<string, CostEvent[]>();
    for (const e of inRange(c)) groups.set(keyOf(e), [...(groups.get(keyOf(e)) ?? []), e]);
    return [...groups.entries()]
      .map(([k, xs]) => {
        const u = unitRow(xs);
        return { [key]: k, ...u, success_rate: u.succeeded / u.operations, cost_per_operation_usd: ratio(sum(xs), u.operations), cost_per_success_usd: ratio(sum(xs), u.succeeded) } as Row;
      })
      .sort((a, b) => (b.total_usd as number) - (a.total_usd as number) || (String(a[key]) < String(b[key]) ? -1 : 1));
  };
}

const escalationsOf = (c: Ctx) => escalations.filter((e) => c.run === undefined || e.scope === `run:${TENANT}/${c.run}`);

const EXPECTED: Record<string, (c: Ctx) => Row[]> = {
  daily_burn: (c) => daysOf(c).map((d) => ({ time: d, total_usd: usd(sum(inRange(c).filter((e) => dayOf(e.eventTime) === d))) })),
  composition: (c) =>
    daysOf(c).map((d) => {
      const row: Row = { time: d };
      const xs = inRange(c).filter((e) => dayOf(e.eventTime) === d);
      for (const k of COMPONENTS) row[k] = usd(xs.reduce((a, e) => a + eventComponents(e)[k], 0));
      return row;
    }),
  unit_economics: (c) =>
    daysOf(c).map((d) => {
      const xs = inRange(c).filter((e) => dayOf(e.eventTime) === d);
      const u = unitRow(xs);
      return { time: d, ...u, usd_per_accepted_task: ratio(sum(xs), u.operations), usd_per_successful_task: ratio(sum(xs), u.succeeded) };
    }),
  weekly_burn: (c) => {
    const weeks = [...new Set(inRange(c).map((e) => mondayOf(e.eventTime)))].sort((a, b) => a - b);
    return weeks.map((w) => ({ time: w, total_usd: usd(sum(inRange(c).filter((e) => mondayOf(e.eventTime) === w))) }));
  },
  rolling_week: (c) =>
    daysOf(c).map((d) => {
      const rolling = usd(sum(c.evs.filter((e) => e.eventTime <= c.to && dayOf(e.eventTime) > d - 7 * DAY && dayOf(e.eventTime) <= d)));
      return { time: d, rolling_7d_usd: rolling, avg_7d_usd: rolling / 7 };
    }),
  runway_inputs: (c) => {
    const upTo = c.evs.filter((e) => e.eventTime <= c.to);
    const week = usd(sum(upTo.filter((e) => e.eventTime >= dayOf(c.to) - 6 * DAY)));
    return [{ run_spend_usd: usd(sum(upTo)), week_usd: week, avg_day_usd: week / 7 }];
  },
  efficiency_task_type: efficiency('task_type', (e) => e.taskType),
  efficiency_model_name: efficiency('model_name', (e) => (e.model === '' ? '(none)' : e.model)),
  efficiency_environment: efficiency('environment', (e) => e.environment),
  stop_conditions_24h: (c) => {
    const xs = escalationsOf(c).filter((e) => e.at > c.to - DAY && e.at <= c.to);
    const n = (s: string) => xs.filter((e) => e.state === s).length;
    return [{ warning: n('WARNING'), hard_stop: n('HARD_STOP'), emergency_stop: n('EMERGENCY_STOP') }];
  },
  recent_stops: (c) =>
    escalationsOf(c)
      .filter((e) => e.at >= c.from && e.at <= c.to)
      .sort((a, b) => b.at - a.at || b.seq - a.seq)
      .map((e) => ({ time: e.at, scope: e.scope, previous: e.previous, state: e.state, reason: e.reason })),
  runs: (c) => [...new Set(inRange(c).map((e) => e.runId))].sort().map((run_id) => ({ run_id })),
};

function expectRows(actual: Row[], expected: Row[], what: string): void {
  expect(actual.length, `${what}: rows`).toBe(expected.length);
  expected.forEach((want, i) => {
    const got = actual[i]!;
    expect(Object.keys(got).sort(), `${what} row ${i}`).toEqual(Object.keys(want).sort());
    for (const [k, v] of Object.entries(want)) {
      if (typeof v === 'number' && typeof got[k] === 'number') expect(got[k] as number, `${what} row ${i} ${k}`).toBeCloseTo(v, 9);
      else expect(got[k], `${what} row ${i} ${k}`).toEqual(v);
    }
  });
}

// ---- The plugin's side: the request it sends and how it reads the answer.

/** Grafana's relative time `now-29d/d` (UTC dashboards) as epoch ms. */
function rangeOf(d: Dash): { from: number; to: number } {
  const m = /^now-(\d+)d(\/d)?$/.exec(d.time.from);
  expect(m, `${d.uid}: time.from ${d.time.from}`).not.toBeNull();
  expect(d.time.to).toBe('now');
  const to = Date.now();
  const back = to - Number(m![1]) * DAY;
  return { from: m![2] ? dayOf(back) : back, to };
}

/** The Infinity backend's request (pkg/infinity/request.go GetQueryURL and its bearer-token modifier). */
function infinityRequest(ds: Datasource, t: Target, vars: Record<string, VarValue>): { url: string; headers: Record<string, string> } {
  let url = t.url!;
  if (!url.startsWith(ds.url)) url = ds.url + url;
  const u = new URL(url);
  for (const p of t.url_options!.params) u.searchParams.append(p.key, interpolateVariables(p.value, vars));
  const headers: Record<string, string> = {};
  if (ds.jsonData?.auth_method === 'bearerToken') {
    // The plugin sends credentials only to its allowed hosts.
    expect(ds.jsonData.allowedHosts?.some((h) => u.toString().startsWith(h)), `${u} is not in allowedHosts`).toBe(true);
    headers.authorization = `Bearer ${ds.secureJsonData?.bearerToken ?? ''}`;
  }
  expect(u.toString()).not.toMatch(/\$|%24/);
  return { url: u.toString(), headers };
}

/** The backend parser (gjson): the root selector's array, each declared column read from every row. */
function infinityRows(body: unknown, t: Target, what: string): Row[] {
  let node: unknown = body;
  for (const part of t.root_selector!.split('.')) node = (node as Record<string, unknown>)[part];
  expect(Array.isArray(node), `${what}: root selector ${t.root_selector}`).toBe(true);
  return (node as Array<Record<string, unknown>>).map((row) => {
    const out: Row = {};
    for (const c of t.columns!) {
      expect(Object.hasOwn(row, c.selector), `${what}: column ${c.selector} in ${JSON.stringify(row)}`).toBe(true);
      const v = row[c.selector];
      if (c.type === 'timestamp_epoch') expect(Number.isSafeInteger(v), `${what}: ${c.selector} epoch ms`).toBe(true);
      else if (c.type === 'number') expect(v === null || typeof v === 'number', `${what}: ${c.selector} number`).toBe(true);
      else expect(typeof v, `${what}: ${c.selector} string`).toBe('string');
      out[c.text] = v as string | number | null;
    }
    return out;
  });
}

async function runInfinity(ds: Datasource, t: Target, d: Dash, run: string | undefined, what: string): Promise<void> {
  const { from, to } = rangeOf(d);
  const runVar = d.templating?.list.find((v) => v.name === 'run');
  const vars: Record<string, VarValue> = { tenant: TENANT, __from: String(from), __to: String(to), run: run ?? { allValue: runVar!.allValue! } };
  const req = infinityRequest(ds, t, vars);
  const res = await fetch(req.url, { headers: req.headers });
  expect(res.status, `${what}: ${req.url} ${await res.clone().text()}`).toBe(200);
  const rows = infinityRows(await res.json(), t, what);
  const id = /\/v1\/reports\/panels\/(\w+)$/.exec(t.url!)?.[1];
  const expected = id === undefined ? undefined : EXPECTED[id];
  expect(expected, `${what}: no expectation for ${t.url} (add one to this test)`).toBeDefined();
  const sec = (ms: number) => Math.floor(ms / 1000) * 1000;
  const evs = events.filter((e) => run === undefined || e.runId === run);
  const want = expected!({ evs, run, from: sec(from), to: sec(to) });
  if (run === undefined) expect(want.length, `${what}: the seed leaves this panel empty`).toBeGreaterThan(0);
  expectRows(rows, want, what);
}

// ---- Prometheus: expected live values for the dashboard expressions (by PROMQL id).

const todayUsd = () => usd(sum(events.filter((e) => e.eventTime >= today)));
const weekUsd = () => usd(sum(events.filter((e) => e.eventTime >= today - 6 * DAY)));
const runUsd = () => usd(sum(events));
const PROM_EXPECTED: Record<string, () => Record<string, number> | number> = {
  // The failure rate (1 of 3 today) over 0.2 with the day past B_day_soft: HARD STOP, as the guard holds it.
  guardrail_state_tenant: () => ({ [`tenant:${TENANT}`]: stateRank(forge.guardrail.effectiveState(`tenant:${TENANT}`)) }),
  guardrail_state_global: () => ({ global: 0 }),
  day_soft: () => BANDS.B_day_soft,
  day_hard: () => BANDS.B_day_hard,
  week_soft: () => BANDS.B_week_soft,
  week_hard: () => BANDS.B_week_hard,
  day_live: todayUsd,
  day_utilisation: () => todayUsd() / BANDS.B_day_hard,
  week_live: weekUsd,
  run_utilisation: () => ({ [`tenant:${TENANT}`]: runUsd() / BANDS.B_run_cap }),
  runway_days: () => (BANDS.B_run_cap - runUsd()) / (weekUsd() / 7),
};
const promIdOf = new Map(Object.values(PROMQL).map((q) => [q.expr, q.id]));

async function promQuery(path: string, params: Record<string, string>): Promise<Array<{ metric: Record<string, string>; value?: [number, string]; values?: Array<[number, string]> }>> {
  const res = await fetch(`${prom.url}/api/v1/${path}?${new URLSearchParams(params)}`);
  const body = (await res.json()) as { status: string; error?: string; data: { resultType: string; result: unknown } };
  expect(body.status, `${params.query}: ${body.error}`).toBe('success');
  if (body.data.resultType === 'scalar') return [{ metric: {}, value: body.data.result as [number, string] }];
  return body.data.result as Array<{ metric: Record<string, string>; value?: [number, string] }>;
}

async function eventually(what: string, ok: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > until) throw new Error(`${what} never held; prometheus: ${prom.output()}; targets: ${JSON.stringify(await (await fetch(`${prom.url}/api/v1/targets`)).json())}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('embedded dashboards: every panel against its provisioned data source', () => {
  it('the embedded set has the daily, weekly and platform dashboards, on the report API and Prometheus only', () => {
    const ds = provisioned({ FORGE_GRAFANA_FORGE_URL: 'http://forge.test:8080', FORGE_GRAFANA_API_KEY: 'k', FORGE_GRAFANA_PROMETHEUS_URL: 'http://prom.test:9090' });
    expect([...ds.keys()].sort()).toEqual([PROMETHEUS.uid, REPORT_API.uid].sort());
    expect(ds.get(REPORT_API.uid)?.type).toBe(REPORT_API.type);
    const uids = dashboards().map((d) => d.uid).sort();
    expect(uids).toEqual(['forge-daily-burn-embedded', 'forge-platform-health', 'forge-weekly-burn-embedded']);
    for (const d of dashboards()) {
      for (const p of d.panels) {
        for (const t of p.targets ?? []) expect([REPORT_API.uid, PROMETHEUS.uid], `${d.uid} / ${p.title}`).toContain((t.datasource ?? p.datasource)?.uid);
      }
    }
  });

  it('every report-API target and variable query: the plugin\'s request to a running Forge, its columns and values (all runs and one run)', async () => {
    const ds = provisioned({ FORGE_GRAFANA_FORGE_URL: forge.url, FORGE_GRAFANA_API_KEY: grafanaKey, FORGE_GRAFANA_PROMETHEUS_URL: prom.url }).get(REPORT_API.uid)!;
    let n = 0;
    for (const d of dashboards()) {
      for (const v of d.templating?.list ?? []) {
        if (v.datasource?.uid !== REPORT_API.uid) continue;
        expect(v.query?.queryType).toBe('infinity');
        await runInfinity(ds, v.query!.infinityQuery!, d, undefined, `${d.uid} variable ${v.name}`);
        n++;
      }
      for (const p of d.panels) {
        for (const t of p.targets ?? []) {
          if ((t.datasource ?? p.datasource)?.uid !== REPORT_API.uid) continue;
          for (const run of [undefined, 'r1', 'r2']) await runInfinity(ds, t, d, run, `${d.uid} / ${p.title} ${t.refId} run=${run ?? 'All'}`);
          n++;
        }
      }
    }
    // Daily: stop conditions, daily burn, composition, unit economics, recent stops; weekly: rolling week,
    // ISO weeks, runway inputs, three efficiency tables; the run variable twice.
    expect(n).toBe(13);
  }, 60_000);

  it('the report API: the tenant only, a tenant-bound key only for its tenant, bad input named', async () => {
    const get = (qs: string, key = grafanaKey, panel = 'daily_burn') => fetch(`${forge.url}/v1/reports/panels/${panel}?${qs}`, { headers: { authorization: `Bearer ${key}` } });
    const range = `from=${today - 2 * DAY}&to=${now}`;
    const mine = (await (await get(`tenant_id=other&${range}`, otherKey)).json()) as { rows: Row[] };
    expect(mine.rows.map((r) => r.total_usd)).toEqual([0, 0, 50]);
    const denied = await get(`tenant_id=${TENANT}&${range}`, otherKey);
    expect(denied.status).toBe(403);
    expect(((await denied.json()) as { error: { code: string; field: string } }).error).toMatchObject({ code: 'FORGE_ERR_FORBIDDEN_TENANT', field: 'tenant_id' });
    expect((await fetch(`${forge.url}/v1/reports/panels/daily_burn?tenant_id=${TENANT}`)).status).toBe(401);
    const bad = async (qs: string, field: string, panel?: string) => {
      const r = await get(qs, grafanaKey, panel);
      expect(r.status, qs).toBe(400);
      expect(((await r.json()) as { error: { field: string } }).error.field, qs).toContain(field);
    };
    await bad(`tenant_id=${TENANT}&from=${now}&to=${now - DAY}`, 'from');
    await bad(`tenant_id=${TENANT}&from=${now - 400 * DAY}&to=${now}`, 'from');
    await bad(`tenant_id=${TENANT}&from=yesterday`, 'from');
    await bad(`tenant_id=bad%20tenant`, 'tenant_id');
    await bad(`tenant_id=${TENANT}&run_id=${encodeURIComponent("r1' OR 1=1")}`, 'run_id');
    await bad(`tenant_id=${TENANT}`, 'panel', 'no_such_panel');
    await bad(`tenant_id=${TENANT}&database=system`, 'database');
  });

  it('every Prometheus target and the tenant variable: the shipped scrape config over Forge and a runner, expected values', async () => {
    const flags = (await (await fetch(`${prom.url}/api/v1/status/flags`)).json()) as { data: Record<string, string> };
    // Prometheus prints 35d as 5w.
    expect(['35d', '5w']).toContain(flags.data['storage.tsdb.retention.time']);
    // Both jobs up (Forge with the key), several scrapes in (rates), the tenant's series and the runner's beat.
    await eventually('both targets scraped', async () => {
      const up = await promQuery('query', { query: 'count_over_time(up[1m])' });
      return up.length === 2 && up.every((s) => Number(s.value![1]) >= 4) && (await promQuery('query', { query: 'min(up)' }))[0]?.value?.[1] === '1';
    });
    await eventually('tenant series scraped', async () => (await promQuery('query', { query: `forge_cost_total_day_usd{scope="tenant:${TENANT}"}` })).length === 1);

    const match = /^label_values\((.+), tenant\)$/.exec(TENANT_VARIABLE_QUERY)![1]!;
    const tenants = (await (await fetch(`${prom.url}/api/v1/label/tenant/values?${new URLSearchParams({ 'match[]': match })}`)).json()) as { data: string[] };
    expect(tenants.data).toEqual(expect.arrayContaining([TENANT, 'other']));

    let n = 0;
    const end = Math.floor(Date.now() / 1000);
    for (const d of dashboards()) {
      for (const p of d.panels) {
        for (const t of p.targets ?? []) {
          if ((t.datasource ?? p.datasource)?.uid !== PROMETHEUS.uid) continue;
          n++;
          const expr = expandPlatformPromql(expandPromql(t.expr!, TENANT), { rateInterval: '1m', range: '10m' });
          const what = `${d.uid} / ${p.title} ${t.refId}: ${expr}`;
          let result: Array<{ metric: Record<string, string>; value?: [number, string]; values?: Array<[number, string]> }> = [];
          await eventually(what, async () => {
            result = t.instant ? await promQuery('query', { query: expr }) : await promQuery('query_range', { query: expr, start: String(end - 300), end: String(Date.now() / 1000), step: '5' });
            return result.length > 0;
          }, 30_000);
          const id = promIdOf.get(t.expr!);
          const want = id === undefined ? undefined : PROM_EXPECTED[id]?.();
          if (want === undefined) continue;
          const last = (s: (typeof result)[number]) => Number(s.value?.[1] ?? s.values?.at(-1)?.[1]);
          if (typeof want === 'number') {
            expect(result, what).toHaveLength(1);
            expect(last(result[0]!), what).toBeCloseTo(want, 6);
          } else {
            const byScope = Object.fromEntries(result.map((s) => [s.metric.scope, last(s)]));
            for (const [scope, v] of Object.entries(want)) expect(byScope[scope], `${what} ${scope}`).toBeCloseTo(v, 6);
          }
        }
      }
    }
    expect(n).toBeGreaterThanOrEqual(20);
  }, 120_000);
});

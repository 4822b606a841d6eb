import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CLICKHOUSE, dailyBurnDashboard, generatedDashboards, PROMETHEUS, PROMQL, RENDERINGS, REPORT_API, SQL, weeklyBurnDashboard } from '../dashboards/index.ts';

const root = join(import.meta.dirname, '..');

interface Target {
  refId: string;
  datasource?: { type?: string; uid?: string };
  rawSql?: string;
  expr?: string;
  url?: string;
  format?: number;
  queryType?: string;
  editorType?: string;
}
interface Panel {
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  fieldConfig?: { defaults?: { unit?: string; thresholds?: { steps: Array<{ value: number | null; color: string }> }; mappings?: unknown[] }; overrides?: unknown[] };
}
interface Dash {
  uid: string;
  title: string;
  timezone: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; query?: unknown; includeAll?: boolean; allValue?: string; datasource?: { uid?: string } }> };
}

const dashboards = (): Dash[] => [dailyBurnDashboard() as unknown as Dash, weeklyBurnDashboard() as unknown as Dash];
const targets = (d: Dash): Target[] => d.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ ...t, datasource: t.datasource ?? p.datasource })));

describe('generated dashboards', () => {
  it('the committed grafana/dashboards/*.json is what the code generates (npm run dashboards:build)', () => {
    for (const f of generatedDashboards()) {
      let committed: string;
      try {
        committed = readFileSync(join(root, f.path), 'utf8');
      } catch {
        throw new Error(`${f.path} is missing: run npm run dashboards:build and commit it`);
      }
      expect(committed, `${f.path} is stale: run npm run dashboards:build`).toBe(f.text);
    }
  });

  it('the comparison would catch a change in the code', () => {
    const [daily] = generatedDashboards();
    const changed = JSON.parse(daily!.text) as Dash;
    changed.panels[0]!.title = 'something else';
    expect(`${JSON.stringify(changed, null, 2)}\n`).not.toBe(readFileSync(join(root, daily!.path), 'utf8'));
  });

  it('has the panels the issue asks for', () => {
    const [daily, weekly] = dashboards();
    expect(daily!.panels.map((p) => p.title)).toEqual([
      'Guardrail status',
      'Today (live)',
      'Today / B_day_hard',
      'Stop conditions, last 24 h',
      'Daily burn (30 days) with B_day_soft and B_day_hard',
      'Cost composition by component',
      'Unit economics',
      'Recent stop conditions',
    ]);
    expect(weekly!.panels.map((p) => p.title)).toEqual([
      'Budget utilisation (run spend / B_run_cap)',
      'Runway',
      'Rolling 7 days (live)',
      'Rolling 7-day burn with B_week_soft and B_week_hard',
      'Weekly burn (ISO weeks, Monday UTC)',
      'Run spend and 7-day average burn',
      'Efficiency by task type',
      'Efficiency by model',
      'Efficiency by environment',
    ]);
    expect(new Set([daily!.uid, weekly!.uid]).size).toBe(2);
    for (const d of [daily!, weekly!]) expect(d.timezone).toBe('utc');
  });

  it('template variables: database (constant), tenant, run with the custom all value the SQL expects', () => {
    for (const d of dashboards()) {
      const v = Object.fromEntries(d.templating.list.map((x) => [x.name, x]));
      expect(v.database?.type).toBe('constant');
      expect(v.tenant?.datasource?.uid).toBe(PROMETHEUS.uid);
      expect(v.run?.includeAll).toBe(true);
      expect(v.run?.allValue).toBe("'__all__'");
      expect(v.run?.datasource?.uid).toBe(CLICKHOUSE.uid);
    }
  });

  it('every ClickHouse target is one of the tested panel queries, in the right format', () => {
    const known = new Map(Object.values(SQL).map((q) => [q.sql, q]));
    const used = new Set<string>();
    for (const d of dashboards()) {
      for (const t of targets(d).filter((x) => x.datasource?.uid === CLICKHOUSE.uid)) {
        const q = known.get(t.rawSql ?? '');
        if (q) used.add(q.id);
        expect(q, `${d.uid} ${t.refId}: unknown SQL`).toBeDefined();
        expect(t.editorType).toBe('sql');
        expect(t.format).toBe(q!.format === 'time_series' ? 0 : 1);
        expect(t.datasource?.type).toBe('grafana-clickhouse-datasource');
      }
    }
    // ... and every tested query is on a dashboard.
    expect([...used].sort()).toEqual(Object.values(SQL).map((q) => q.id).sort());
  });

  it('every PromQL target is one of the expressions checked against Prometheus', () => {
    const known = new Set(Object.values(PROMQL).map((q) => q.expr));
    for (const d of dashboards()) {
      for (const t of targets(d).filter((x) => x.datasource?.uid === PROMETHEUS.uid)) expect(known.has(t.expr ?? ''), `${d.uid}: ${t.expr}`).toBe(true);
    }
  });

  it('every query against the log has a tenant filter, a time bound and reads through FINAL', () => {
    for (const q of Object.values(SQL)) {
      expect(q.sql, q.id).toContain('tenant_id = ${tenant:singlequote}');
      expect(q.sql, q.id).toMatch(/\$__timeFilter\((event_time|at)\)|(event_time|at) <= \(\$__toTime\)/);
      expect(q.sql, q.id).toMatch(/\.(cost_events|guardrail_events) FINAL/);
      // $__fromTime / $__toTime not followed by ")" would swallow the next parenthesised expression.
      for (const m of q.sql.matchAll(/\$__(fromTime|toTime)\b/g)) {
        const nextParen = /[()]/.exec(q.sql.slice(m.index + m[0].length))?.[0];
        expect(nextParen ?? ')', `${q.id}: ${m[0]} at ${m.index}`).toBe(')');
      }
    }
  });

  it('money is in USD with band colours; the status card maps all four states', () => {
    const [daily] = dashboards();
    const byTitle = Object.fromEntries(daily!.panels.map((p) => [p.title, p]));
    expect(byTitle['Daily burn (30 days) with B_day_soft and B_day_hard']?.fieldConfig?.defaults?.unit).toBe('currencyUSD');
    expect(byTitle['Cost composition by component']?.fieldConfig?.defaults?.unit).toBe('currencyUSD');
    const status = byTitle['Guardrail status'];
    const texts = JSON.stringify(status?.fieldConfig?.defaults?.mappings);
    for (const s of ['NORMAL', 'WARNING', 'HARD STOP', 'EMERGENCY STOP']) expect(texts).toContain(`"${s}"`);
    const gauge = byTitle['Today / B_day_hard'];
    expect(gauge?.fieldConfig?.defaults?.thresholds?.steps.map((s) => s.value)).toEqual([null, 0.8, 1, 1.1]);
  });

  it('the provisioned datasources carry the uids the dashboards use; the provider loads grafana/dashboards', () => {
    const ds = parse(readFileSync(join(root, 'grafana/provisioning/datasources/forge.yaml'), 'utf8')) as { datasources: Array<{ uid: string; type: string }> };
    expect(ds.datasources.map((d) => [d.uid, d.type])).toEqual([
      [CLICKHOUSE.uid, CLICKHOUSE.type],
      [PROMETHEUS.uid, PROMETHEUS.type],
    ]);
    const prov = parse(readFileSync(join(root, 'grafana/provisioning/dashboards/forge.yaml'), 'utf8')) as { providers: Array<{ type: string; options: { path: string } }> };
    expect(prov.providers[0]?.type).toBe('file');
  });
});

describe('embedded rendering (the report API instead of ClickHouse)', () => {
  const pairs = (): Array<[Dash, Dash]> => [
    [dailyBurnDashboard() as unknown as Dash, dailyBurnDashboard(RENDERINGS.embedded) as unknown as Dash],
    [weeklyBurnDashboard() as unknown as Dash, weeklyBurnDashboard(RENDERINGS.embedded) as unknown as Dash],
  ];

  it('the same panels, each ClickHouse query becoming the report API\'s panel of the same query; PromQL unchanged', () => {
    for (const [prod, emb] of pairs()) {
      expect(emb.uid).toBe(`${prod.uid}-embedded`);
      expect(emb.panels.map((p) => [p.title, p.type])).toEqual(prod.panels.map((p) => [p.title, p.type]));
      prod.panels.forEach((p, i) => {
        const e = emb.panels[i]!;
        expect(e.datasource?.uid, p.title).toBe(p.datasource?.uid === CLICKHOUSE.uid ? REPORT_API.uid : p.datasource?.uid);
        expect(e.targets?.length, p.title).toBe(p.targets?.length);
        p.targets?.forEach((t, j) => {
          const et = e.targets![j]!;
          if (t.datasource?.uid === CLICKHOUSE.uid) {
            const q = Object.values(SQL).find((x) => x.sql === t.rawSql);
            expect(et.datasource?.uid, p.title).toBe(REPORT_API.uid);
            expect(et.url, p.title).toBe(`/v1/reports/panels/${q!.id}`);
          } else {
            expect(JSON.stringify(et), p.title).toBe(JSON.stringify(t));
          }
        });
      });
      expect(JSON.stringify(emb)).not.toContain(CLICKHOUSE.uid);
    }
  });

  it('unit economics is a daily trend (per accepted and per successful task) in both renderings', () => {
    for (const d of [dailyBurnDashboard(), dailyBurnDashboard(RENDERINGS.embedded)] as unknown as Dash[]) {
      const p = d.panels.find((x) => x.title === 'Unit economics');
      expect(p?.type).toBe('timeseries');
      expect(JSON.stringify(p)).toContain('usd_per_accepted_task');
      expect(JSON.stringify(p)).toContain('usd_per_successful_task');
    }
    expect(SQL.unitEconomics.format).toBe('time_series');
    expect(SQL.unitEconomics.columns[0]).toBe('time');
  });

  it('the embedded provisioning: the report API (key from the environment) and Prometheus, and a provider', () => {
    const text = readFileSync(join(root, 'grafana/embedded/provisioning/datasources/forge.yaml'), 'utf8');
    const ds = parse(text) as { datasources: Array<{ uid: string; type: string; url: string; jsonData?: Record<string, unknown>; secureJsonData?: Record<string, string> }> };
    expect(ds.datasources.map((d) => [d.uid, d.type])).toEqual([
      [REPORT_API.uid, REPORT_API.type],
      [PROMETHEUS.uid, PROMETHEUS.type],
    ]);
    expect(ds.datasources[0]?.secureJsonData?.bearerToken).toBe('${FORGE_GRAFANA_API_KEY}');
    expect(ds.datasources[0]?.jsonData?.allowedHosts).toEqual([ds.datasources[0]?.url]);
    const prov = parse(readFileSync(join(root, 'grafana/embedded/provisioning/dashboards/forge.yaml'), 'utf8')) as { providers: Array<{ type: string }> };
    expect(prov.providers[0]?.type).toBe('file');
    // Production's directory (what terraform mounts) holds no embedded dashboard.
    const prod = generatedDashboards().filter((f) => f.path.startsWith('grafana/dashboards/'));
    expect(prod.map((f) => JSON.parse(f.text) as Dash).every((d) => !JSON.stringify(d).includes(REPORT_API.uid))).toBe(true);
  });
});

import type { Builder, Dataquery } from '@grafana/grafana-foundation-sdk/cog';
import type { DataSourceRef } from '@grafana/grafana-foundation-sdk/common';
import { GraphDrawStyle, LineStyleBuilder, ReduceDataOptionsBuilder } from '@grafana/grafana-foundation-sdk/common';
import {
  ConstantVariableBuilder,
  DashboardBuilder,
  DashboardCursorSync,
  MappingType,
  QueryVariableBuilder,
  ThresholdsConfigBuilder,
  ThresholdsMode,
  VariableRefresh,
  VariableSort,
  type ValueMapping,
  type VariableModel,
} from '@grafana/grafana-foundation-sdk/dashboard';
import { DataqueryBuilder as PromQueryBuilder } from '@grafana/grafana-foundation-sdk/prometheus';
import { COMPONENTS, componentSpec, type Component } from '../rules/index.ts';
import type { PromQuery } from './promql.ts';
import { TENANT_VARIABLE_QUERY, TENANT_VARIABLE_REGEX } from './promql.ts';
import { ALL_RUNS, columnKind, RUN_VARIABLE_SQL, RUNS, type PanelQuery } from './sql.ts';

/** Datasource uids the provisioning files under grafana/provisioning/datasources create. */
export const CLICKHOUSE: Required<DataSourceRef> = { type: 'grafana-clickhouse-datasource', uid: 'forge-clickhouse' };
export const PROMETHEUS: Required<DataSourceRef> = { type: 'prometheus', uid: 'forge-prometheus' };
export const MIXED: Required<DataSourceRef> = { type: 'datasource', uid: '-- Mixed --' };
/** Forge's report API through the Infinity plugin (grafana/embedded/provisioning): the event log on the embedded default. */
export const REPORT_API: Required<DataSourceRef> = { type: 'yesoreyeram-infinity-datasource', uid: 'forge-report-api' };

/** Money is shown in US dollars (Grafana's currencyUSD unit). */
export const USD = 'currencyUSD';

/** Colours used for the same meaning everywhere (soft band, hard band, emergency). */
export const COLOURS = { ok: 'green', soft: 'orange', hard: 'red', emergency: 'dark-purple' } as const;

/**
 * Component colours by position in COMPONENTS (Grafana's name and the burn page's hex of the same colour):
 * a component added to the list takes the next one, so dashboards need no edit.
 */
const COMPONENT_PALETTE = [
  ['blue', '#1565c0'],
  ['purple', '#8e24aa'],
  ['green', '#2e7d32'],
  ['yellow', '#f9a825'],
  ['orange', '#ef6c00'],
  ['light-blue', '#64b5f6'],
  ['dark-green', '#1b5e20'],
  ['light-purple', '#ce93d8'],
] as const;

/** The dashboards' view of each component: its name, display label and colours. */
export const COMPONENT_VIEW: ReadonlyArray<{ key: Component; label: string; colour: string; hex: string }> = COMPONENTS.map((key, i) => {
  const [colour, hex] = COMPONENT_PALETTE[i % COMPONENT_PALETTE.length] as readonly [string, string];
  return { key, label: componentSpec(key).label, colour, hex };
});

/** The guardrail states as the status card shows them (value of forge_guardrail_state). */
export const STATE_MAPPINGS: ValueMapping[] = [
  {
    type: MappingType.ValueToText,
    options: {
      '0': { text: 'NORMAL', color: COLOURS.ok, index: 0 },
      '1': { text: 'WARNING', color: COLOURS.soft, index: 1 },
      '2': { text: 'HARD STOP', color: COLOURS.hard, index: 2 },
      '3': { text: 'EMERGENCY STOP', color: COLOURS.emergency, index: 3 },
    },
  },
];

export function thresholds(steps: Array<[number | null, string]>): ThresholdsConfigBuilder {
  return new ThresholdsConfigBuilder().mode(ThresholdsMode.Absolute).steps(steps.map(([value, color]) => ({ value, color })));
}

/** Share of a band: below 80% fine, 80% (the default soft band) warns, 100% is the hard band, 110% emergency. */
export const UTILISATION_THRESHOLDS = (): ThresholdsConfigBuilder =>
  thresholds([
    [null, COLOURS.ok],
    [0.8, COLOURS.soft],
    [1, COLOURS.hard],
    [1.1, COLOURS.emergency],
  ]);

/** A stat or gauge shows the last value of its series. */
export const lastValue = (): ReduceDataOptionsBuilder => new ReduceDataOptionsBuilder().calcs(['lastNotNull']).values(false);

/** A band drawn as a dashed line in the band's colour. */
export const bandLine = (color: string) => [
  { id: 'custom.drawStyle', value: GraphDrawStyle.Line },
  { id: 'custom.lineStyle', value: new LineStyleBuilder().fill('dash').dash([10, 10]).build() },
  { id: 'custom.lineWidth', value: 2 },
  { id: 'custom.fillOpacity', value: 0 },
  { id: 'color', value: { mode: 'fixed', fixedColor: color } },
];

/**
 * Where a burn dashboard reads the event log. `production`: the ClickHouse server, through the ClickHouse
 * plugin. `embedded`: the default `npm start`, whose store lives inside the Forge process, so Grafana asks
 * Forge's report API (`GET /v1/reports/panels/:panel`), which runs the very same panel SQL on that store.
 * Live panels (bands, states, today) read Prometheus in both. One panel list, two renderings.
 */
export type Profile = 'production' | 'embedded';

export interface Rendering {
  readonly profile: Profile;
  /** The data source of the panels over the event log. */
  readonly history: Required<DataSourceRef>;
  /** A target running one panel query. */
  target(q: PanelQuery, refId?: string): Builder<Dataquery>;
}

export const RENDERINGS: Readonly<Record<Profile, Rendering>> = {
  production: { profile: 'production', history: CLICKHOUSE, target: (q, refId = 'A') => chTarget(q, refId) },
  embedded: { profile: 'embedded', history: REPORT_API, target: (q, refId = 'A') => new InfinityQueryBuilder(q, refId) },
};

/** A dashboard's uid, title and file name suffix in a rendering (production keeps the plain ones). */
export const renderedUid = (uid: string, r: Rendering): string => (r.profile === 'production' ? uid : `${uid}-${r.profile}`);

/** The frame every Forge dashboard shares: UTC, read-only, crosshair tooltips, the tenant and run variables. */
export function forgeDashboard(o: { title: string; uid: string; description: string; from: string; refresh: string }, r: Rendering = RENDERINGS.production): DashboardBuilder {
  const embedded = r.profile === 'embedded';
  return new DashboardBuilder(embedded ? `${o.title} (embedded)` : o.title)
    .uid(renderedUid(o.uid, r))
    .description(embedded ? `${o.description} Event log through Forge's report API (embedded store).` : o.description)
    .tags(['forge', 'cost', 'generated', ...(embedded ? ['embedded'] : [])])
    .timezone('utc')
    .time({ from: o.from, to: 'now' })
    .refresh(o.refresh)
    .tooltip(DashboardCursorSync.Crosshair)
    .readonly()
    .variables(embedded ? embeddedVariables() : variables());
}

/**
 * A query of the official ClickHouse plugin (SQL editor). The foundation SDK has no type for this plugin,
 * so this is the plugin's own query model (src/types/sql.ts: editorType, queryType, rawSql; `format` is
 * the backend's sqlutil format: 0 time series, 1 table).
 */
export interface ClickHouseQuery extends Dataquery {
  refId: string;
  datasource: DataSourceRef;
  editorType: 'sql';
  queryType: 'table' | 'timeseries';
  format: 0 | 1;
  rawSql: string;
  pluginVersion: string;
}

export class ClickHouseQueryBuilder implements Builder<Dataquery> {
  readonly #q: PanelQuery;
  #refId: string;

  constructor(q: PanelQuery, refId = 'A') {
    this.#q = q;
    this.#refId = refId;
  }

  refId(refId: string): this {
    this.#refId = refId;
    return this;
  }

  build(): ClickHouseQuery {
    const ts = this.#q.format === 'time_series';
    return {
      refId: this.#refId,
      datasource: CLICKHOUSE,
      editorType: 'sql',
      queryType: ts ? 'timeseries' : 'table',
      format: ts ? 0 : 1,
      rawSql: this.#q.sql,
      pluginVersion: '4.0.0',
      _implementsDataqueryVariant() {},
    };
  }
}

/** The run variable's all value where no SQL quoting is involved (the report API's run_id). */
export const ALL_RUNS_PARAM = '__all__';

/** The path of a panel query on Forge's report API (relative to the Infinity data source's URL). */
export const reportPanelPath = (q: PanelQuery): string => `/v1/reports/panels/${q.id}`;

/**
 * A query of the Infinity plugin (yesoreyeram-infinity-datasource, src/types/query.types.ts: a JSON URL
 * source parsed by the backend parser, so it also runs in alerting): GET the report API's panel
 * endpoint with the dashboard's tenant, run and time range (epoch ms), take `rows` and type its columns.
 */
export interface InfinityQuery extends Dataquery {
  refId: string;
  datasource: DataSourceRef;
  type: 'json';
  source: 'url';
  parser: 'backend';
  format: 'table';
  url: string;
  url_options: { method: 'GET'; params: Array<{ key: string; value: string }> };
  root_selector: string;
  columns: Array<{ selector: string; text: string; type: 'string' | 'number' | 'timestamp_epoch' }>;
}

/** Column types as the plugin names them; times travel as epoch milliseconds. */
const INFINITY_TYPES = { time: 'timestamp_epoch', text: 'string', number: 'number' } as const;

export function infinityQuery(q: PanelQuery, refId = 'A'): InfinityQuery {
  const params = [{ key: 'tenant_id', value: '${tenant}' }];
  // The run variable's own query must not depend on it.
  if (/\$\{run\b|\$run\b/.test(q.sql)) params.push({ key: 'run_id', value: '${run}' });
  params.push({ key: 'from', value: '${__from}' }, { key: 'to', value: '${__to}' });
  return {
    refId,
    datasource: REPORT_API,
    type: 'json',
    source: 'url',
    parser: 'backend',
    format: 'table',
    url: reportPanelPath(q),
    url_options: { method: 'GET', params },
    root_selector: 'rows',
    columns: q.columns.map((c) => ({ selector: c, text: c, type: INFINITY_TYPES[columnKind(q, c)] })),
    _implementsDataqueryVariant() {},
  };
}

export class InfinityQueryBuilder implements Builder<Dataquery> {
  readonly #q: PanelQuery;
  readonly #refId: string;

  constructor(q: PanelQuery, refId = 'A') {
    this.#q = q;
    this.#refId = refId;
  }

  build(): InfinityQuery {
    return infinityQuery(this.#q, this.#refId);
  }
}

export function promTarget(q: PromQuery, refId: string, opts: { instant?: boolean } = {}): PromQueryBuilder {
  const b = new PromQueryBuilder().datasource(PROMETHEUS).expr(q.expr).legendFormat(q.legend).refId(refId);
  return opts.instant ? b.instant() : b.range();
}

export function chTarget(q: PanelQuery, refId = 'A'): ClickHouseQueryBuilder {
  return new ClickHouseQueryBuilder(q, refId);
}

const tenantVariable = (): QueryVariableBuilder =>
  new QueryVariableBuilder('tenant')
    .label('Tenant')
    .datasource(PROMETHEUS)
    .query({ query: TENANT_VARIABLE_QUERY, refId: 'PrometheusVariableQueryEditor-VariableQuery', qryType: 1 })
    .definition(TENANT_VARIABLE_QUERY)
    .regex(TENANT_VARIABLE_REGEX)
    .refresh(VariableRefresh.OnDashboardLoad)
    .sort(VariableSort.AlphabeticalAsc);

/** The variables both dashboards share: database (hidden constant), tenant, run (with All). */
export function variables(): Array<Builder<VariableModel>> {
  return [
    new ConstantVariableBuilder('database').label('ClickHouse database').value('forge').description('Database holding cost_events and guardrail_events (FORGE_CLICKHOUSE_DATABASE).'),
    tenantVariable(),
    new QueryVariableBuilder('run')
      .label('Run')
      .datasource(CLICKHOUSE)
      .query(RUN_VARIABLE_SQL)
      .definition(RUN_VARIABLE_SQL)
      .includeAll(true)
      .allValue(ALL_RUNS)
      .current({ text: 'All', value: '$__all', selected: true })
      .refresh(VariableRefresh.OnTimeRangeChanged)
      .sort(VariableSort.AlphabeticalAsc),
  ];
}

/** The embedded rendering's variables: tenant (Prometheus) and run (the report API's run list, with All). */
export function embeddedVariables(): Array<Builder<VariableModel>> {
  return [
    tenantVariable(),
    new QueryVariableBuilder('run')
      .label('Run')
      .datasource(REPORT_API)
      .query({ queryType: 'infinity', refId: 'variable', infinityQuery: infinityQuery(RUNS, 'variable') })
      .definition(`GET ${reportPanelPath(RUNS)}`)
      .includeAll(true)
      .allValue(ALL_RUNS_PARAM)
      .current({ text: 'All', value: '$__all', selected: true })
      .refresh(VariableRefresh.OnTimeRangeChanged)
      .sort(VariableSort.AlphabeticalAsc),
  ];
}

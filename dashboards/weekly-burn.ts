import { BigValueColorMode, BigValueGraphMode, BigValueTextMode, GraphDrawStyle, LegendDisplayMode, LegendPlacement, ReduceDataOptionsBuilder, VizLegendOptionsBuilder, VisibilityMode } from '@grafana/grafana-foundation-sdk/common';
import type { Dashboard } from '@grafana/grafana-foundation-sdk/dashboard';
import { PanelBuilder as GaugePanel } from '@grafana/grafana-foundation-sdk/gauge';
import { PanelBuilder as StatPanel } from '@grafana/grafana-foundation-sdk/stat';
import { PanelBuilder as TablePanel } from '@grafana/grafana-foundation-sdk/table';
import { PanelBuilder as TimeSeriesPanel } from '@grafana/grafana-foundation-sdk/timeseries';
import { bandLine, forgeDashboard, lastValue, COLOURS, MIXED, PROMETHEUS, promTarget, RENDERINGS, thresholds, USD, UTILISATION_THRESHOLDS, type Rendering } from './grafana.ts';
import { PROMQL } from './promql.ts';
import { SQL, type PanelQuery } from './sql.ts';

export const WEEKLY_UID = 'forge-weekly-burn';

function efficiencyTable(r: Rendering, q: PanelQuery, key: string, label: string): TablePanel {
  return new TablePanel()
    .title(q.title)
    .description(`Operations, success rate and cost per operation / per successful task by ${label} over the time range.`)
    .datasource(r.history)
    .withTarget(r.target(q))
    .overrideByName(key, [{ id: 'displayName', value: label }])
    .overrideByRegexp('.*_usd$', [{ id: 'unit', value: USD }, { id: 'decimals', value: 4 }])
    .overrideByName('total_usd', [{ id: 'decimals', value: 2 }])
    .overrideByName('success_rate', [
      { id: 'unit', value: 'percentunit' },
      { id: 'thresholds', value: thresholds([[null, COLOURS.hard], [0.8, COLOURS.soft], [0.95, COLOURS.ok]]).build() },
      { id: 'custom.cellOptions', value: { type: 'color-text' } },
    ])
    .span(8)
    .height(9);
}

/**
 * Weekly burn: run budget utilisation and runway (live metrics), the rolling 7-day burn against the week
 * bands with its 7-day moving average, ISO-week totals, and efficiency by task type, model, environment.
 */
export function weeklyBurnDashboard(r: Rendering = RENDERINGS.production): Dashboard {
  const b = forgeDashboard({ title: 'Forge / Weekly burn', uid: WEEKLY_UID, description: 'Weekly burn of a tenant (or one of its runs) against its week bands and run cap. Money in USD; weeks are rolling 7 UTC days unless marked ISO.', from: 'now-89d/d', refresh: '5m' }, r);

  b.withPanel(
    new GaugePanel()
      .title('Budget utilisation (run spend / B_run_cap)')
      .description('Cumulative spend over the run cap, for the tenant and each of its runs (forge_cost_total_run_usd / forge_budget_run_cap_usd).')
      .datasource(PROMETHEUS)
      .withTarget(promTarget(PROMQL.runUtilisation, 'A', { instant: true }))
      .unit('percentunit')
      .min(0)
      .max(1.2)
      .thresholds(UTILISATION_THRESHOLDS())
      .showThresholdMarkers(true)
      .reduceOptions(lastValue())
      .span(10)
      .height(7),
  );
  b.withPanel(
    new StatPanel()
      .title('Runway')
      .description('Days until the tenant reaches B_run_cap at its 7-day moving average burn: (B_run_cap - run spend) / (rolling 7 days / 7).')
      .datasource(PROMETHEUS)
      .withTarget(promTarget(PROMQL.runwayDays, 'A', { instant: true }))
      .unit('d')
      .decimals(1)
      .thresholds(thresholds([[null, COLOURS.hard], [7, COLOURS.soft], [30, COLOURS.ok]]))
      .colorMode(BigValueColorMode.Background)
      .graphMode(BigValueGraphMode.None)
      .reduceOptions(lastValue())
      .span(7)
      .height(7),
  );
  b.withPanel(
    new StatPanel()
      .title('Rolling 7 days (live)')
      .description('forge_cost_total_week_usd of the tenant, with B_week_soft and B_week_hard.')
      .datasource(PROMETHEUS)
      .withTarget(promTarget(PROMQL.weekLive, 'A', { instant: true }))
      .withTarget(promTarget(PROMQL.weekSoft, 'B', { instant: true }))
      .withTarget(promTarget(PROMQL.weekHard, 'C', { instant: true }))
      .unit(USD)
      .decimals(2)
      .colorMode(BigValueColorMode.None)
      .graphMode(BigValueGraphMode.None)
      .textMode(BigValueTextMode.ValueAndName)
      .reduceOptions(lastValue())
      .span(7)
      .height(7),
  );

  b.withPanel(
    new TimeSeriesPanel()
      .title('Rolling 7-day burn with B_week_soft and B_week_hard')
      .description('For each UTC day: the 7 days ending that day (as the week bands are judged) and the 7-day moving average per day.')
      .datasource(MIXED)
      .withTarget(r.target(SQL.rollingWeek, 'A'))
      .withTarget(promTarget(PROMQL.weekSoft, 'B'))
      .withTarget(promTarget(PROMQL.weekHard, 'C'))
      .unit(USD)
      .min(0)
      .drawStyle(GraphDrawStyle.Line)
      .lineWidth(2)
      .fillOpacity(15)
      .showPoints(VisibilityMode.Never)
      .overrideByName('rolling_7d_usd', [{ id: 'displayName', value: 'rolling 7 days' }, { id: 'color', value: { mode: 'fixed', fixedColor: 'blue' } }])
      .overrideByName('avg_7d_usd', [{ id: 'displayName', value: '7-day moving average (per day)' }, { id: 'color', value: { mode: 'fixed', fixedColor: 'green' } }, { id: 'custom.fillOpacity', value: 0 }])
      .overrideByQuery('B', bandLine(COLOURS.soft))
      .overrideByQuery('C', bandLine(COLOURS.hard))
      .legend(new VizLegendOptionsBuilder().displayMode(LegendDisplayMode.List).placement(LegendPlacement.Bottom).showLegend(true).calcs(['lastNotNull', 'max']))
      .span(24)
      .height(10),
  );

  b.withPanel(
    new TimeSeriesPanel()
      .title('Weekly burn (ISO weeks, Monday UTC)')
      .datasource(r.history)
      .withTarget(r.target(SQL.weeklyBurn))
      .unit(USD)
      .min(0)
      .drawStyle(GraphDrawStyle.Bars)
      .fillOpacity(80)
      .overrideByName('total_usd', [{ id: 'displayName', value: 'week total' }, { id: 'color', value: { mode: 'fixed', fixedColor: 'blue' } }])
      .span(14)
      .height(8),
  );
  b.withPanel(
    new StatPanel()
      .title(SQL.runwayInputs.title)
      .description('From the event log, up to the end of the time range: cumulative spend, the rolling 7 days and its daily average (the runway inputs).')
      .datasource(r.history)
      .withTarget(r.target(SQL.runwayInputs))
      .unit(USD)
      .decimals(2)
      .reduceOptions(new ReduceDataOptionsBuilder().calcs(['lastNotNull']).values(false).fields('/_usd$/'))
      .colorMode(BigValueColorMode.None)
      .graphMode(BigValueGraphMode.None)
      .textMode(BigValueTextMode.ValueAndName)
      .overrideByName('run_spend_usd', [{ id: 'displayName', value: 'run spend' }])
      .overrideByName('week_usd', [{ id: 'displayName', value: 'rolling 7 days' }])
      .overrideByName('avg_day_usd', [{ id: 'displayName', value: '7-day average per day' }])
      .span(10)
      .height(8),
  );

  b.withPanel(efficiencyTable(r, SQL.efficiencyByTaskType, 'task_type', 'task type'));
  b.withPanel(efficiencyTable(r, SQL.efficiencyByModel, 'model_name', 'model'));
  b.withPanel(efficiencyTable(r, SQL.efficiencyByEnvironment, 'environment', 'environment'));
  return b.build();
}

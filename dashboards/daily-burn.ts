import { BigValueColorMode, BigValueGraphMode, BigValueTextMode, GraphDrawStyle, LegendDisplayMode, LegendPlacement, ReduceDataOptionsBuilder, StackingConfigBuilder, StackingMode, VizLegendOptionsBuilder, VisibilityMode } from '@grafana/grafana-foundation-sdk/common';
import type { Dashboard } from '@grafana/grafana-foundation-sdk/dashboard';
import { PanelBuilder as GaugePanel } from '@grafana/grafana-foundation-sdk/gauge';
import { PanelBuilder as StatPanel } from '@grafana/grafana-foundation-sdk/stat';
import { PanelBuilder as TablePanel } from '@grafana/grafana-foundation-sdk/table';
import { PanelBuilder as TimeSeriesPanel } from '@grafana/grafana-foundation-sdk/timeseries';
import { componentSpec } from '../rules/index.ts';
import { bandLine, forgeDashboard, lastValue, COLOURS, COMPONENT_VIEW, MIXED, PROMETHEUS, promTarget, RENDERINGS, STATE_MAPPINGS, thresholds, USD, UTILISATION_THRESHOLDS, type Rendering } from './grafana.ts';
import { PROMQL } from './promql.ts';
import { SQL } from './sql.ts';

export const DAILY_UID = 'forge-daily-burn';

/**
 * Daily burn: the guardrail status of the tenant's scopes, today's live total against B_day_hard, stop
 * conditions in the last 24 h, daily totals over 30 days with the day bands, composition by component,
 * unit economics per day (cost per accepted and per successful task), and the latest escalations.
 */
export function dailyBurnDashboard(r: Rendering = RENDERINGS.production): Dashboard {
  const b = forgeDashboard({ title: 'Forge / Daily burn', uid: DAILY_UID, description: 'Daily burn of a tenant (or one of its runs) against its day budget bands. Money in USD; days are UTC.', from: 'now-29d/d', refresh: '1m' }, r);

  b.withPanel(
    new StatPanel()
      .title('Guardrail status')
      .description('forge_guardrail_state of the global scope, the tenant and each of its runs: NORMAL, WARNING (acknowledge), HARD STOP (no new tasks), EMERGENCY STOP (run terminated).')
      .datasource(PROMETHEUS)
      .withTarget(promTarget(PROMQL.guardrailStateGlobal, 'A', { instant: true }))
      .withTarget(promTarget(PROMQL.guardrailStateTenant, 'B', { instant: true }))
      .mappings(STATE_MAPPINGS)
      .thresholds(thresholds([[null, COLOURS.ok], [1, COLOURS.soft], [2, COLOURS.hard], [3, COLOURS.emergency]]))
      .colorMode(BigValueColorMode.Background)
      .graphMode(BigValueGraphMode.None)
      .textMode(BigValueTextMode.ValueAndName)
      .reduceOptions(lastValue())
      .noValue('no state reported')
      .span(10)
      .height(6),
  );
  b.withPanel(
    new StatPanel()
      .title('Today (live)')
      .description('forge_cost_total_day_usd of the tenant: the current UTC day, storage pro rata.')
      .datasource(PROMETHEUS)
      .withTarget(promTarget(PROMQL.dayLive, 'A', { instant: true }))
      .unit(USD)
      .decimals(2)
      .colorMode(BigValueColorMode.None)
      .graphMode(BigValueGraphMode.None)
      .reduceOptions(lastValue())
      .span(5)
      .height(6),
  );
  b.withPanel(
    new GaugePanel()
      .title('Today / B_day_hard')
      .description('Share of the hard day band spent today. 80% is the default soft band (WARNING), 100% HARD STOP, 110% EMERGENCY STOP.')
      .datasource(PROMETHEUS)
      .withTarget(promTarget(PROMQL.dayUtilisation, 'A', { instant: true }))
      .unit('percentunit')
      .min(0)
      .max(1.2)
      .thresholds(UTILISATION_THRESHOLDS())
      .showThresholdMarkers(true)
      .reduceOptions(lastValue())
      .span(4)
      .height(6),
  );
  b.withPanel(
    new StatPanel()
      .title(SQL.stopConditions24h.title)
      .description('Escalations into each stop level in the 24 hours ending at the end of the time range (guardrail_events).')
      .datasource(r.history)
      .withTarget(r.target(SQL.stopConditions24h))
      .colorMode(BigValueColorMode.Background)
      .graphMode(BigValueGraphMode.None)
      .textMode(BigValueTextMode.ValueAndName)
      .reduceOptions(new ReduceDataOptionsBuilder().calcs(['lastNotNull']).values(false).fields('/^(warning|hard_stop|emergency_stop)$/'))
      .thresholds(thresholds([[null, COLOURS.ok]]))
      .overrideByName('warning', [{ id: 'displayName', value: 'WARNING' }, { id: 'thresholds', value: thresholds([[null, COLOURS.ok], [1, COLOURS.soft]]).build() }])
      .overrideByName('hard_stop', [{ id: 'displayName', value: 'HARD STOP' }, { id: 'thresholds', value: thresholds([[null, COLOURS.ok], [1, COLOURS.hard]]).build() }])
      .overrideByName('emergency_stop', [{ id: 'displayName', value: 'EMERGENCY STOP' }, { id: 'thresholds', value: thresholds([[null, COLOURS.ok], [1, COLOURS.emergency]]).build() }])
      .span(5)
      .height(6),
  );

  b.withPanel(
    new TimeSeriesPanel()
      .title('Daily burn (30 days) with B_day_soft and B_day_hard')
      .description('Total cost per UTC day from the event log (each event once), against the tenant\'s day bands from the live metrics.')
      .datasource(MIXED)
      .withTarget(r.target(SQL.dailyBurn, 'A'))
      .withTarget(promTarget(PROMQL.daySoft, 'B'))
      .withTarget(promTarget(PROMQL.dayHard, 'C'))
      .unit(USD)
      .min(0)
      .drawStyle(GraphDrawStyle.Bars)
      .fillOpacity(80)
      .showPoints(VisibilityMode.Never)
      .overrideByName('total_usd', [{ id: 'displayName', value: 'daily total' }, { id: 'color', value: { mode: 'fixed', fixedColor: 'blue' } }])
      .overrideByQuery('B', bandLine(COLOURS.soft))
      .overrideByQuery('C', bandLine(COLOURS.hard))
      .legend(new VizLegendOptionsBuilder().displayMode(LegendDisplayMode.List).placement(LegendPlacement.Bottom).showLegend(true).calcs(['sum', 'max']))
      .span(24)
      .height(10),
  );

  const composition = new TimeSeriesPanel()
    .title('Cost composition by component')
    .description(`Per UTC day: ${COMPONENT_VIEW.map((c) => componentSpec(c.key).what).join(', ')}.`)
    .datasource(r.history)
    .withTarget(r.target(SQL.composition))
    .unit(USD)
    .min(0)
    .drawStyle(GraphDrawStyle.Bars)
    .fillOpacity(90)
    .stacking(new StackingConfigBuilder().mode(StackingMode.Normal).group('A'));
  for (const c of COMPONENT_VIEW) {
    composition.overrideByName(c.key, [{ id: 'displayName', value: c.label }, { id: 'color', value: { mode: 'fixed', fixedColor: c.colour } }]);
  }
  b.withPanel(
    composition
      .legend(new VizLegendOptionsBuilder().displayMode(LegendDisplayMode.Table).placement(LegendPlacement.Right).showLegend(true).calcs(['sum']))
      .span(16)
      .height(9),
  );
  // Hidden from the lines, kept in the tooltip: what each day's ratios are made of.
  const tooltipOnly = [{ id: 'custom.hideFrom', value: { viz: true, legend: true, tooltip: false } }];
  b.withPanel(
    new TimeSeriesPanel()
      .title(SQL.unitEconomics.title)
      .description('Per UTC day: total cost per accepted task (every finalized task, any status: forge.cost.usd_per_accepted_task) and per successful task (forge.cost.usd_per_successful_task); a failed task\'s spend counts in both. A gap is a day without such tasks.')
      .datasource(r.history)
      .withTarget(r.target(SQL.unitEconomics))
      .unit(USD)
      .decimals(4)
      .min(0)
      .drawStyle(GraphDrawStyle.Line)
      .lineWidth(2)
      .fillOpacity(0)
      .showPoints(VisibilityMode.Always)
      .overrideByName('usd_per_accepted_task', [{ id: 'displayName', value: 'per accepted task' }, { id: 'color', value: { mode: 'fixed', fixedColor: 'blue' } }])
      .overrideByName('usd_per_successful_task', [{ id: 'displayName', value: 'per successful task' }, { id: 'color', value: { mode: 'fixed', fixedColor: 'green' } }])
      .overrideByName('operations', [{ id: 'displayName', value: 'accepted tasks' }, { id: 'unit', value: 'none' }, { id: 'decimals', value: 0 }, ...tooltipOnly])
      .overrideByName('succeeded', [{ id: 'displayName', value: 'successful tasks' }, { id: 'unit', value: 'none' }, { id: 'decimals', value: 0 }, ...tooltipOnly])
      .overrideByName('total_usd', [{ id: 'displayName', value: 'day total' }, { id: 'decimals', value: 2 }, ...tooltipOnly])
      .legend(new VizLegendOptionsBuilder().displayMode(LegendDisplayMode.List).placement(LegendPlacement.Bottom).showLegend(true).calcs(['mean', 'lastNotNull']))
      .span(8)
      .height(9),
  );

  b.withPanel(
    new TablePanel()
      .title(SQL.recentStops.title)
      .description('Escalations (state changes to a higher level) of the tenant\'s scopes in the time range, newest first.')
      .datasource(r.history)
      .withTarget(r.target(SQL.recentStops))
      .overrideByName('state', [{ id: 'mappings', value: [{ type: 'value', options: { WARNING: { color: COLOURS.soft, text: 'WARNING' }, HARD_STOP: { color: COLOURS.hard, text: 'HARD STOP' }, EMERGENCY_STOP: { color: COLOURS.emergency, text: 'EMERGENCY STOP' } } }] }, { id: 'custom.cellOptions', value: { type: 'color-text' } }])
      .span(24)
      .height(8),
  );
  return b.build();
}

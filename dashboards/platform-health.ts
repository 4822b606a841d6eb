import { BigValueColorMode, BigValueGraphMode, LegendDisplayMode, LegendPlacement, VizLegendOptionsBuilder } from '@grafana/grafana-foundation-sdk/common';
import { DashboardBuilder, DashboardCursorSync, type Dashboard } from '@grafana/grafana-foundation-sdk/dashboard';
import { PanelBuilder as StatPanel } from '@grafana/grafana-foundation-sdk/stat';
import { PanelBuilder as TimeSeriesPanel } from '@grafana/grafana-foundation-sdk/timeseries';
import { COLOURS, lastValue, PROMETHEUS, promTarget, thresholds } from './grafana.ts';
import { PLATFORM_PROMQL as Q, type PromQuery } from './promql.ts';

export const PLATFORM_UID = 'forge-platform-health';

const legend = (): VizLegendOptionsBuilder => new VizLegendOptionsBuilder().showLegend(true).displayMode(LegendDisplayMode.Table).placement(LegendPlacement.Bottom);

function series(title: string, description: string, unit: string, queries: PromQuery[]): TimeSeriesPanel {
  const panel = new TimeSeriesPanel().title(title).description(description).datasource(PROMETHEUS).unit(unit).legend(legend()).span(12).height(8);
  queries.forEach((q, i) => panel.withTarget(promTarget(q, String.fromCharCode(65 + i))));
  return panel;
}

/**
 * Platform health: the API (requests, 5xx share, p99 latency per route), the runners (queue depth, in
 * flight against slots, heartbeat age, kills) and the processes (event loop lag, heap, GC). Prometheus
 * only: it works on the embedded default with a Prometheus scraping Forge and its runners.
 */
export function platformHealthDashboard(): Dashboard {
  const b = new DashboardBuilder('Forge / Platform health')
    .uid(PLATFORM_UID)
    .description('Forge itself: API traffic, errors and latency; runner queues, slots, heartbeats and kills; process health.')
    .tags(['forge', 'platform', 'generated'])
    .timezone('utc')
    .time({ from: 'now-6h', to: 'now' })
    .refresh('30s')
    .tooltip(DashboardCursorSync.Crosshair)
    .readonly();

  b.withPanel(
    new StatPanel()
      .title('API 5xx share')
      .description('Requests answered 5xx over all requests (forge_api_request_errors_total / forge_api_requests_total). The ForgeApiErrors rule pages above 5%.')
      .datasource(PROMETHEUS)
      .withTarget(promTarget(Q.apiErrorRatio, 'A', { instant: true }))
      .unit('percentunit')
      .thresholds(thresholds([[null, COLOURS.ok], [0.01, COLOURS.soft], [0.05, COLOURS.hard]]))
      .colorMode(BigValueColorMode.Background)
      .graphMode(BigValueGraphMode.Area)
      .reduceOptions(lastValue())
      .span(8)
      .height(5),
  );
  b.withPanel(
    new StatPanel()
      .title('Oldest runner heartbeat')
      .description('Seconds since each runner last beat (forge_runner_last_heartbeat_timestamp_seconds). The ForgeRunnerDead rule pages past 120 s.')
      .datasource(PROMETHEUS)
      .withTarget(promTarget(Q.runnerHeartbeatAge, 'A', { instant: true }))
      .unit('s')
      .thresholds(thresholds([[null, COLOURS.ok], [30, COLOURS.soft], [120, COLOURS.hard]]))
      .colorMode(BigValueColorMode.Background)
      .graphMode(BigValueGraphMode.None)
      .reduceOptions(lastValue())
      .span(8)
      .height(5),
  );
  b.withPanel(
    new StatPanel()
      .title('Guardrail escalations')
      .description('Escalations into WARNING, HARD_STOP and EMERGENCY_STOP counted by the API process (0 on a fresh start).')
      .datasource(PROMETHEUS)
      .withTarget(promTarget(Q.stopConditions, 'A', { instant: true }))
      .colorMode(BigValueColorMode.None)
      .graphMode(BigValueGraphMode.None)
      .reduceOptions(lastValue())
      .span(8)
      .height(5),
  );
  b.withPanel(series('API requests by route', 'Requests per second by route template.', 'reqps', [Q.apiRequestRate]));
  b.withPanel(series('API p99 latency by route', 'p99 of forge_api_request_duration_seconds by route template.', 's', [Q.apiLatencyP99]));
  b.withPanel(series('Runner queues', 'Tasks waiting (queue depth), tasks in flight and slots (concurrency) per queue: saturation is in flight = slots with tasks waiting.', 'short', [Q.runnerQueueDepth, Q.runnerInFlight, Q.runnerConcurrency]));
  b.withPanel(series('Runner kills', 'Tasks aborted by runners in the time range, by reason (hung, emergency, anomaly).', 'short', [Q.runnerKills]));
  b.withPanel(series('Event loop lag (p99)', 'Event loop delay of each Forge process (API, runners).', 's', [Q.eventLoopLag]));
  b.withPanel(series('Heap used', 'V8 heap in use per process.', 'bytes', [Q.heapUsed]));
  b.withPanel(series('GC time', 'Seconds per second spent in garbage collection, by kind.', 's', [Q.gcTime]));
  return b.build();
}

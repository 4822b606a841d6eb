import { dailyBurnDashboard } from './daily-burn.ts';
import { RENDERINGS } from './grafana.ts';
import { platformHealthDashboard } from './platform-health.ts';
import { weeklyBurnDashboard } from './weekly-burn.ts';

export interface GeneratedFile {
  /** Path relative to the repository root. */
  path: string;
  text: string;
}

const json = (d: unknown): string => `${JSON.stringify(d, null, 2)}\n`;

/**
 * The dashboards as the code defines them (stable text: 2-space JSON and a final newline). grafana/dashboards
 * is the production set (ClickHouse and Prometheus); grafana/embedded/dashboards the set for the embedded
 * default (Forge's report API and Prometheus), rendered from the same panel definitions.
 */
export function generatedDashboards(): GeneratedFile[] {
  return [
    { path: 'grafana/dashboards/forge-daily-burn.json', text: json(dailyBurnDashboard()) },
    { path: 'grafana/dashboards/forge-weekly-burn.json', text: json(weeklyBurnDashboard()) },
    { path: 'grafana/dashboards/forge-platform-health.json', text: json(platformHealthDashboard()) },
    { path: 'grafana/embedded/dashboards/forge-daily-burn-embedded.json', text: json(dailyBurnDashboard(RENDERINGS.embedded)) },
    { path: 'grafana/embedded/dashboards/forge-weekly-burn-embedded.json', text: json(weeklyBurnDashboard(RENDERINGS.embedded)) },
    // Prometheus only: the same dashboard serves both.
    { path: 'grafana/embedded/dashboards/forge-platform-health.json', text: json(platformHealthDashboard()) },
  ];
}

import { dailyBurnDashboard } from './daily-burn.ts';
import { platformHealthDashboard } from './platform-health.ts';
import { weeklyBurnDashboard } from './weekly-burn.ts';

export interface GeneratedFile {
  /** Path relative to the repository root. */
  path: string;
  text: string;
}

/** grafana/dashboards/*.json as the code defines them (stable text: 2-space JSON and a final newline). */
export function generatedDashboards(): GeneratedFile[] {
  return [
    { path: 'grafana/dashboards/forge-daily-burn.json', text: `${JSON.stringify(dailyBurnDashboard(), null, 2)}\n` },
    { path: 'grafana/dashboards/forge-weekly-burn.json', text: `${JSON.stringify(weeklyBurnDashboard(), null, 2)}\n` },
    { path: 'grafana/dashboards/forge-platform-health.json', text: `${JSON.stringify(platformHealthDashboard(), null, 2)}\n` },
  ];
}

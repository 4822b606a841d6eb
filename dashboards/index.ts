/**
 * dashboards/: Grafana dashboards written as code (generated into grafana/dashboards by
 * `npm run dashboards:build`), their ClickHouse panel queries and PromQL, the plugin's macro expansion,
 * and the built-in burn page (a fastify plugin) that runs the same queries on the store's engine.
 */
export { SQL, ALL_RUNS, RUN_VARIABLE_SQL, RUNS, PANEL_QUERIES, columnKind, type PanelQuery, type QueryFormat, type SqlId } from './sql.ts';
export { PROMQL, PLATFORM_PROMQL, TENANT_VARIABLE_QUERY, TENANT_VARIABLE_REGEX, expandPlatformPromql, expandPromql, type PromQuery } from './promql.ts';
export { platformHealthDashboard, PLATFORM_UID } from './platform-health.ts';
export { expandMacros, expandPluginMacros, expandForEngine, interpolateVariables, MacroError, type ExpandOptions, type VarValue } from './macros.ts';
export { dailyBurnDashboard, DAILY_UID } from './daily-burn.ts';
export { weeklyBurnDashboard, WEEKLY_UID } from './weekly-burn.ts';
export { generatedDashboards, type GeneratedFile } from './generate.ts';
export { CLICKHOUSE, PROMETHEUS, MIXED, REPORT_API, RENDERINGS, ALL_RUNS_PARAM, infinityQuery, reportPanelPath, type ClickHouseQuery, type InfinityQuery, type Profile, type Rendering } from './grafana.ts';
export { burnData, runPanel, sqlSource, type BandsMicros, type BurnData, type PanelParams, type SqlSource } from './burn-data.ts';
export { burnPageRoutes, type BurnPageOptions } from './burn-page/plugin.ts';
export { billingPageRoutes } from './billing-page/plugin.ts';

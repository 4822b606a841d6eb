/**
 * api/: fastify routes over guard, store, billing and the collector; one error handler; the web UI.
 * The process itself is wired in cli/forge-process.ts.
 */
export { buildApp, type AppParts } from './app.ts';
export { KeyStore, MemoryKeyStore, ROLES, type CreatedKey, type KeyBackend, type KeyInfo, type NewKey, type Principal, type Role } from './auth.ts';
export { ConfigError, loadConfig, type ForgeConfig } from './config.ts';
export { ApiError, ERRORS, type ErrorCode } from './errors.ts';
export { billingRoutes } from './routes/billing.ts';
export { reportRoutes } from './routes/reports.ts';
export { TenantRegistry, type TenantSource } from './tenants.ts';
export { tenantRoutes } from './routes/tenants.ts';
export { agentRoutes } from './routes/agents.ts';
export { accountPartsFromConfig } from './accounts.ts';
export type { AccountParts } from './app.ts';
export { evalRoutes, type EvalRouteOptions, type StartEvalRun } from './routes/eval.ts';
export { alertRoutes, type AlertRoutesOptions } from './routes/alerts.ts';
export { anomalyRoutes, type AnomalyRoutesOptions } from './routes/anomalies.ts';
export { incidentRoutes, type IncidentRoutesOptions } from './routes/incidents.ts';

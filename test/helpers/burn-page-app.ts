import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { createChdbConnection } from 'chdb/connection';
import { IncidentLog } from '../../alerts/index.ts';
import { incidentRoutes } from '../../api/index.ts';
import { burnPageRoutes, sqlSource } from '../../dashboards/index.ts';
import { parseBandsConfig } from '../../rules/index.ts';
import { openStore, type Store } from '../../store/index.ts';
import { makeTestApi, type TestApi } from './api.ts';
import { NOW, seedBurn, tenantEvents } from './burn-seed.ts';
import { freshTenant, tempDataDir } from './store-events.ts';

export interface BurnPageApp {
  api: TestApi;
  store: Store;
  raw: ClickHouseClient;
  /** Incidents in the store's guardrail log, served at /v1/incidents as `forge start` does. */
  incidents: IncidentLog;
  tenant: string;
  other: string;
  close(): Promise<void>;
}

/**
 * The whole API app (real auth with API keys, the guardrail service) with the burn page registered the
 * way `forge start` wires it: states and bands from the guardrail, the log from the embedded store.
 * The seeded history is helpers/burn-seed.ts; the clock stands at its NOW.
 */
export async function makeBurnPageApp(name: string): Promise<BurnPageApp> {
  const tmp = tempDataDir(name);
  const tenant = freshTenant('burn');
  const other = freshTenant('other');
  const store = await openStore({ dataDir: tmp.dir });
  const raw = createClient({ connection: createChdbConnection({ path: tmp.dir }) as never });
  await seedBurn(store, async (q) => void (await raw.command({ query: q })), tenant, other);
  const bands = parseBandsConfig(`global:
  B_day_soft: 800
  B_day_hard: 1000
  B_week_soft: 4000
  B_week_hard: 5000
  B_run_cap: 100000
  B_unit_cap: 100
tenants:
  ${tenant}:
    B_day_soft: 1
    B_day_hard: 2
    B_week_soft: 40
    B_week_hard: 50
    B_run_cap: 60
    B_unit_cap: 10
`);
  // The plugin is registered while the app is built; its callbacks reach the app's parts afterwards.
  const ref: { api?: TestApi } = {};
  const plugin = async (app: Parameters<typeof burnPageRoutes>[0]): Promise<void> => {
    await app.register(burnPageRoutes, {
      store: sqlSource(raw, store.database),
      guardrailStates: () => ref.api!.guardrail.knownScopes().map((scope) => ({ scope, state: ref.api!.guardrail.effectiveState(scope) })),
      bands: (scope) => ref.api!.guardrail.bandsFor(scope),
      now: () => ref.api!.clock.now,
    });
  };
  const incidents = new IncidentLog(store, { now: () => ref.api!.clock.now });
  const api = await makeTestApi({ bands, parts: { plugins: [plugin, async (app) => app.register(incidentRoutes, { incidents })] } });
  ref.api = api;
  api.clock.now = NOW;
  // The guardrail sees today's task (e4, retried: 1.23 USD >= B_day_soft 1 USD and failure rate 1/1 > 0.2):
  // HARD_STOP for the tenant and run r1.
  const e = tenantEvents(tenant);
  void api.guardrail.ingest([e.e4]);
  await api.guardrail.drain();
  return {
    api,
    store,
    raw,
    incidents,
    tenant,
    other,
    async close() {
      await api.close();
      await raw.close();
      await store.close();
      tmp.remove();
    },
  };
}

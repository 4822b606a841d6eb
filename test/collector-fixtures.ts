import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import { collectorRoutes, ForgeMetrics, parsePricing, type CollectorRoutesOptions, type EventSink, type Pricing } from '../collector/index.ts';
import type { CostEvent } from '../store/index.ts';

/** Shared set-up of the collector tests (not a test file itself). */

export const PRICING_YAML = `
compute:
  environments:
    cpu-standard: "0.40"
    gpu-a10: "1.60"
storage:
  gb_stored: "300"
  gb_month_usd: "0.23"
  expected_tasks_day: 0
llm:
  models:
    gpt-4o: { input_per_mtok_usd: "2.50", output_per_mtok_usd: "10.00" }
native_price:
  source: fixed
  usd: "2500"
limits:
  max_op_usd: "10000"
`;

export function testPricing(yaml = PRICING_YAML, env: { FORGE_RPC_URL?: string } = {}): Pricing {
  return parsePricing(yaml, 'test-pricing.yaml', env);
}

/**
 * An EventSink that keeps rows in memory, once per eventId (as the store does). Used where the test is
 * about the collector's own behaviour; the round-trip tests use the real store.
 */
export class MemorySink implements EventSink {
  readonly rows = new Map<string, CostEvent>();
  writes = 0;
  fail: Error | undefined;
  write(events: CostEvent[]): Promise<{ fresh: boolean[] }> {
    this.writes++;
    if (this.fail) return Promise.reject(this.fail);
    const fresh = events.map((e) => {
      if (this.rows.has(e.eventId)) return false;
      this.rows.set(e.eventId, e);
      return true;
    });
    return Promise.resolve({ fresh });
  }
}

export interface TestApp {
  app: FastifyInstance;
  metrics: ForgeMetrics;
  tenants: Set<string>;
  accepted: CostEvent[][];
  errors: unknown[];
}

/**
 * A fastify app with only the collector routes. Known tenants are `tenants`; a request may write the
 * tenants listed in its `x-test-tenants` header (comma separated), or any when the header is absent.
 */
export async function buildCollectorApp(opts: Partial<CollectorRoutesOptions> & { sink: EventSink }): Promise<TestApp> {
  const app = Fastify({ logger: false });
  const metrics = opts.metrics ?? new ForgeMetrics();
  const tenants = new Set<string>();
  const accepted: CostEvent[][] = [];
  const errors: unknown[] = [];
  await app.register(collectorRoutes, {
    pricing: testPricing(),
    knownTenant: (t) => tenants.has(t),
    canWriteTenant: (req, t) => {
      const h = req.headers['x-test-tenants'];
      return typeof h !== 'string' || h.split(',').includes(t);
    },
    onAccepted: (evs) => {
      accepted.push(evs);
    },
    onError: (e) => errors.push(e),
    ...opts,
    metrics,
  });
  await app.ready();
  return { app, metrics, tenants, accepted, errors };
}

/** A fresh tenant id per test (its own namespace). */
export function freshTenant(prefix = 't'): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/** A valid raw event; override any field (undefined removes it). */
export function rawEvent(tenant: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  const base: Record<string, unknown> = {
    event_id: `ev-${randomUUID()}`,
    tenant_id: tenant,
    run_id: 'run-1',
    task_id: `task-${randomUUID().slice(0, 8)}`,
    task_type: 'eval',
    model: 'gpt-4o',
    environment: 'gpu-a10',
    status: 'success',
    finalized_at: '2026-03-02T09:00:00Z',
    rli_eval_usd: '0.10',
    gas: { gas_used: 21000, gas_price_gwei: '30', chain_id: 1 },
    task_hours: '0.25',
    llm: [{ model: 'gpt-4o', input_tokens: 1000, output_tokens: 200 }],
  };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) delete base[k];
    else base[k] = v;
  }
  return base;
}

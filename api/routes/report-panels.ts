import type { FastifyInstance } from 'fastify';
import { ALL_RUNS_PARAM, columnKind, PANEL_QUERIES, runPanel, sqlSource, type PanelQuery } from '../../dashboards/index.ts';
import type { Store } from '../../store/index.ts';
import { requireTenant } from '../auth.ts';
import { ApiError, errorBodySchema } from '../errors.ts';
import { principalOf } from '../http.ts';
import { RUN_ID, TENANT_ID } from '../schemas.ts';

const DAY = 86_400_000;
const MAX_DAYS = 366;
/** Epoch milliseconds, as Grafana's ${__from} and ${__to} give them (year 2000 .. 2100). */
const EPOCH_MS = { type: 'integer', minimum: 946_684_800_000, maximum: 4_102_444_800_000 } as const;

type Cell = string | number | null;

/** A ClickHouse Date ('2026-03-01') or DateTime64 in UTC ('2026-03-01 10:00:00.000') as epoch ms. */
function epochMs(v: unknown): number | null {
  if (v === null || v === undefined) return null;
  const s = String(v);
  const t = Date.parse(/^\d{4}-\d{2}-\d{2}$/.test(s) ? `${s}T00:00:00Z` : `${s.replace(' ', 'T')}Z`);
  if (!Number.isFinite(t)) throw new Error(`not a UTC date or time: ${s}`);
  return t;
}

/** A result row with typed cells: times in epoch ms, numbers as JSON numbers (ClickHouse quotes 64-bit integers). */
function typedRow(q: PanelQuery, row: Record<string, unknown>): Record<string, Cell> {
  const out: Record<string, Cell> = {};
  for (const c of q.columns) {
    const v = row[c];
    const kind = columnKind(q, c);
    out[c] = v === null || v === undefined ? null : kind === 'time' ? epochMs(v) : kind === 'text' ? String(v) : Number(v);
  }
  return out;
}

/**
 * `GET /v1/reports/panels/:panel`: one dashboard panel's query (dashboards/sql.ts, the very SQL the
 * ClickHouse plugin runs in production) on the store's engine, with the tenant, run and time range bound as
 * parameters. This is what Grafana's Infinity data source reads on the embedded default, where the store
 * lives inside the Forge process. Rows carry the query's columns; `time` is epoch ms (UTC).
 */
export async function reportPanelRoutes(app: FastifyInstance, opts: { store: Pick<Store, 'client' | 'database'>; now: () => number }): Promise<void> {
  const src = sqlSource(opts.store.client, opts.store.database);
  const panels = Object.keys(PANEL_QUERIES).sort();

  app.get<{ Params: { panel: string }; Querystring: { tenant_id: string; run_id?: string; from?: number; to?: number } }>(
    '/v1/reports/panels/:panel',
    {
      config: { roles: ['finance'] },
      schema: {
        tags: ['reports'],
        summary: 'One panel of the Grafana burn dashboards over the event log (the embedded default\'s data source for Grafana)',
        description: `Time range [from, to] in epoch ms (Grafana's \${__from} and \${__to}; default the 30 days ending now, at most ${MAX_DAYS} days); run_id ${ALL_RUNS_PARAM} or absent: every run of the tenant.`,
        params: { type: 'object', additionalProperties: false, required: ['panel'], properties: { panel: { type: 'string', enum: panels } } },
        querystring: {
          type: 'object',
          additionalProperties: false,
          required: ['tenant_id'],
          properties: { tenant_id: TENANT_ID, run_id: RUN_ID, from: EPOCH_MS, to: EPOCH_MS },
        },
        response: {
          200: {
            type: 'object',
            required: ['panel', 'tenant_id', 'run_id', 'from', 'to', 'columns', 'rows'],
            properties: {
              panel: { type: 'string' },
              tenant_id: { type: 'string' },
              run_id: { type: ['string', 'null'] },
              from: { type: 'integer' },
              to: { type: 'integer' },
              columns: { type: 'array', items: { type: 'string' } },
              rows: { type: 'array', items: { type: 'object', additionalProperties: { type: ['string', 'number', 'null'] } } },
            },
          },
          400: errorBodySchema,
          401: errorBodySchema,
          403: errorBodySchema,
        },
      },
    },
    async (req) => {
      const { tenant_id: tenant, run_id: runParam } = req.query;
      requireTenant(principalOf(req), tenant);
      const to = req.query.to ?? opts.now();
      const from = req.query.from ?? to - 30 * DAY;
      if (from >= to) throw new ApiError('FORGE_ERR_VALIDATION', 'from must be before to', 'from');
      if (to - from > MAX_DAYS * DAY) throw new ApiError('FORGE_ERR_VALIDATION', `the time range may span at most ${MAX_DAYS} days`, 'from');
      const q = PANEL_QUERIES[req.params.panel] as PanelQuery;
      const run = runParam === undefined || runParam === ALL_RUNS_PARAM ? undefined : runParam;
      const rows = await runPanel(src, q, { tenant, run, from, to });
      return { panel: q.id, tenant_id: tenant, run_id: run ?? null, from, to, columns: [...q.columns], rows: rows.map((r) => typedRow(q, r)) };
    },
  );
}

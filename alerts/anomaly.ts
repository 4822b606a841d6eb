import { z } from 'zod';
import { microsToUsd } from '../rules/index.ts';
import type { AlertsConfig } from './config.ts';
import { dedupKeyOf, link, truncate } from './format.ts';
import type { AlertView } from './types.ts';

/** The cost anomalies Forge detects (F-044). */
export const ANOMALY_KINDS = ['cost_kill', 'execution_spike', 'model_fallback', 'month_trend', 'projected_breach'] as const;
export type AnomalyKind = (typeof ANOMALY_KINDS)[number];

const LABELS: Record<AnomalyKind, string> = {
  cost_kill: 'in-flight cost above 3x the normal cost of its task type: task killed',
  execution_spike: 'executions far above the trailing rate: intake paused',
  model_fallback: 'fallback to a pricier model provider',
  month_trend: 'month trending at 2x the average month',
  projected_breach: 'burn rate projects a budget breach before the period ends',
};

/** A detected anomaly, routed to routes.anomaly; once per scope, kind, subject (task, model) and UTC day. */
export interface AnomalyAlert {
  kind: 'anomaly';
  anomaly: AnomalyKind;
  tenantId: string;
  runId?: string;
  /** The task, model pair, or band concerned: part of the dedup key. */
  subject: string;
  /** USD micros or a count, with its threshold in the same unit. */
  value: number;
  threshold: number;
  unit: 'usd_micros' | 'count';
  detail: string;
  at?: number;
}

const id = z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/);
export const anomalyAlertSchema = z.object({
  kind: z.literal('anomaly'),
  anomaly: z.enum(ANOMALY_KINDS),
  tenantId: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/),
  runId: id.optional(),
  subject: z.string().regex(/^[A-Za-z0-9._:/@>-]{1,200}$/),
  value: z.number().int().nonnegative(),
  threshold: z.number().int().nonnegative(),
  unit: z.enum(['usd_micros', 'count']),
  detail: z.string().max(500),
  at: z.number().int().nonnegative().optional(),
});

const amount = (unit: AnomalyAlert['unit'], v: number): string => (unit === 'usd_micros' ? `$${microsToUsd(v)}` : String(v));

export function anomalyView(a: AnomalyAlert & { at: number }, config: AlertsConfig): AlertView {
  const scope = a.runId ? `run:${a.tenantId}/${a.runId}` : `tenant:${a.tenantId}`;
  const condition = `anomaly:${a.anomaly}:${a.subject}`;
  const links = { dashboard: link(config.links.dashboardUrl, scope), acknowledge: link(config.links.acknowledgeUrl, scope) };
  return {
    kind: 'anomaly',
    scope,
    condition,
    severity: a.anomaly === 'cost_kill' || a.anomaly === 'execution_spike' ? 'error' : 'warning',
    dedupKey: dedupKeyOf(scope, condition, a.at),
    at: a.at,
    title: `Cost anomaly · ${scope}`,
    summary: truncate(`[ANOMALY] ${scope}: ${LABELS[a.anomaly]} (${a.subject}): ${amount(a.unit, a.value)} (threshold ${amount(a.unit, a.threshold)}). ${a.detail}`, 1024),
    facts: [
      { label: 'Scope', value: scope },
      { label: 'Anomaly', value: LABELS[a.anomaly] },
      { label: 'Subject', value: a.subject },
      { label: 'Current value', value: amount(a.unit, a.value) },
      { label: 'Threshold', value: amount(a.unit, a.threshold) },
      ...(a.detail ? [{ label: 'Detail', value: a.detail }] : []),
    ],
    details: { anomaly: a.anomaly, tenant_id: a.tenantId, run_id: a.runId ?? null, subject: a.subject, value: a.value, threshold: a.threshold, unit: a.unit, detail: a.detail, dashboard_url: links.dashboard },
    links,
  };
}

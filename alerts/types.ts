import type { GuardState, StateChange } from '../rules/index.ts';

/** A task that has reported nothing for too long. */
export interface HungTaskAlert {
  kind: 'hung_task';
  tenantId: string;
  runId: string;
  taskId: string;
  /** How long the task has been silent, ms. */
  silentForMs: number;
  /** Epoch ms; defaults to the dispatcher clock. */
  at?: number;
}

/** A Forge component that is failing (the guardrails may be blind while it is). */
export interface ComponentFailureAlert {
  kind: 'component_failure';
  component: 'collector' | 'api' | 'store';
  error: string | Error;
  at?: number;
}

export type OperationalAlert = HungTaskAlert | ComponentFailureAlert;
export type AlertKind = 'guard' | OperationalAlert['kind'] | 'user_spend' | 'anomaly' | 'key_health';

export type PagerDutySeverity = 'critical' | 'error' | 'warning' | 'info';
export type EventAction = 'trigger' | 'acknowledge' | 'resolve' | 'notify';

/** What every alert shows, independent of the destination's format. */
export interface AlertView {
  kind: AlertKind;
  scope: string;
  /** Condition id (e.g. `day_hard`), or `hung_task:<taskId>`, `component_failure:<component>`. */
  condition: string;
  state?: GuardState;
  previous?: GuardState;
  severity: PagerDutySeverity;
  /** Per scope + condition + UTC day. */
  dedupKey: string;
  /** Epoch ms. */
  at: number;
  title: string;
  /** One line, at most 1024 characters (PagerDuty's limit). */
  summary: string;
  /** Labelled values, in display order (scope, value, threshold, 7-day burn, top component, ...). */
  facts: ReadonlyArray<{ label: string; value: string }>;
  /** Machine-readable details (PagerDuty custom_details). */
  details: Record<string, unknown>;
  links: { dashboard: string; acknowledge: string };
}

export type { StateChange };

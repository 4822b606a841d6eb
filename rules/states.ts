import type { Bands } from './bands.ts';
import type { Component } from './cost-model.ts';

/** Guardrail states, in escalation order. */
export const GUARD_STATES = ['NORMAL', 'WARNING', 'HARD_STOP', 'EMERGENCY_STOP'] as const;
export type GuardState = (typeof GUARD_STATES)[number];

const RANK: Record<GuardState, number> = { NORMAL: 0, WARNING: 1, HARD_STOP: 2, EMERGENCY_STOP: 3 };

export function stateRank(s: GuardState): number {
  return RANK[s];
}

export function maxState(a: GuardState, b: GuardState): GuardState {
  return RANK[a] >= RANK[b] ? a : b;
}

/** True when the state forbids new task intake and contract submissions. */
export function isHalted(s: GuardState): boolean {
  return RANK[s] >= RANK.HARD_STOP;
}

/**
 * Scope keys: `global`, `tenant:<tenantId>`, `run:<tenantId>/<runId>`.
 * An event touches all three of its scopes.
 */
export type ScopeKey = string;

export const GLOBAL_SCOPE: ScopeKey = 'global';

export function tenantScope(tenantId: string): ScopeKey {
  return `tenant:${tenantId}`;
}

export function runScope(tenantId: string, runId: string): ScopeKey {
  return `run:${tenantId}/${runId}`;
}

/** The scopes one task of a tenant and run touches, widest first. */
export function scopesOf(tenantId: string, runId: string): [ScopeKey, ScopeKey, ScopeKey] {
  return [GLOBAL_SCOPE, tenantScope(tenantId), runScope(tenantId, runId)];
}

export interface ParsedScope {
  kind: 'global' | 'tenant' | 'run';
  tenantId?: string;
  runId?: string;
}

/** Parses a scope key; returns undefined when it is not one. */
export function parseScope(key: string): ParsedScope | undefined {
  if (key === GLOBAL_SCOPE) return { kind: 'global' };
  const t = /^tenant:([A-Za-z0-9._-]{1,64})$/.exec(key);
  if (t) return { kind: 'tenant', tenantId: t[1] };
  const r = /^run:([A-Za-z0-9._-]{1,64})\/([A-Za-z0-9._:-]{1,128})$/.exec(key);
  if (r) return { kind: 'run', tenantId: r[1], runId: r[2] };
  return undefined;
}

/** A budget version: version 1 is what the bands file resolves to; each change through the API adds one. */
export interface BudgetVersion {
  version: number;
  bands: Bands;
  actor: string;
  reason: string;
  /** Epoch ms; 0 for the bands file's version. */
  at: number;
}

/**
 * The control state of one scope that every process shares, carried by each change published on the
 * halt bus: the guard status (state, seq, acknowledgement, waivers) and the budget version in force.
 */
export interface ScopeControl {
  guard: GuardStatus;
  /** Absent while the bands file's version 1 is in force. */
  budget?: BudgetVersion;
}

/** What a published change is: a state transition, or an operator decision (the state may stay). */
export type ChangeKind = 'transition' | 'acknowledgement' | 'lift' | 'budget';

/** A state change as published on the halt bus and recorded in guardrail_events. */
export interface StateChange {
  scope: ScopeKey;
  state: GuardState;
  previous: GuardState;
  /** Monotonic per scope; subscribers ignore a change whose seq is not above the last they saw. */
  seq: number;
  /** Epoch milliseconds. */
  at: number;
  reason: string;
  /** Every condition that holds at the change, with value, threshold and top component. */
  holds: ConditionHit[];
  /** Trailing 7-day burn of the scope (today included), USD micros. */
  weekMicros: number;
  /** Set for operator actions (acknowledge, lift, budget change). */
  actor?: string;
  /** Default 'transition'. Runners and billing read `state` only; alerts and metrics take transitions. */
  kind?: ChangeKind;
  /** The scope's shared control state after this change. */
  control?: ScopeControl;
}

export type ConditionLevel = 'WARNING' | 'HARD_STOP' | 'EMERGENCY_STOP';

/** Stable ids of the design's stop conditions. */
export type ConditionId =
  | 'day_soft'
  | 'week_soft'
  | 'unit_near_cap'
  | 'day_projected'
  | 'week_projected'
  | 'day_hard'
  | 'week_hard'
  | 'run_cap'
  | 'unit_cap_consecutive'
  | 'failure_burn'
  | 'day_emergency'
  | 'unit_emergency'
  | 'hard_three_days';

/** One condition that holds, as evaluated. */
export interface ConditionHit {
  id: ConditionId;
  level: ConditionLevel;
  /** Canonical metric the condition reads, e.g. "forge.cost.total.day_usd". */
  metric: string;
  /** Unit of value and threshold: USD micros, a ratio (0..1), or a count (tasks, days). */
  unit: 'usd_micros' | 'ratio' | 'count';
  value: number;
  threshold: number;
  /** The cost component contributing most to the value. */
  topComponent: Component;
  /**
   * Day conditions only (day_soft, day_hard, day_emergency, failure_burn): the UTC day (days since the epoch)
   * whose totals `value` reads. A late event's hits name the day it was finalized on, not today.
   */
  day?: number;
}

/** The day conditions: their waivers end with the UTC day they were given for. */
export const DAY_CONDITIONS = ['day_soft', 'day_hard', 'day_emergency', 'failure_burn'] as const;
export type DayConditionId = (typeof DAY_CONDITIONS)[number];

/** The latched guard of a scope. */
export interface GuardStatus {
  state: GuardState;
  /** Epoch ms of the last state change. */
  since: number;
  /** Per-scope sequence of state changes. */
  seq: number;
  /** A WARNING stays until acknowledged; then it clears once no warning holds. */
  acknowledged: boolean;
  /**
   * Conditions an operator lifted that are in force on the UTC day of the last evaluation: a lifted
   * condition that is not a day condition stays waived while it keeps holding; a day condition is listed
   * when it was waived for that day (see dayWaivers). Read-only convenience for callers; the engine
   * decides day conditions from dayWaivers.
   */
  waived: readonly ConditionId[];
  /**
   * Every waiver of a day condition with the UTC day it was given for: it covers that condition on that
   * day only (a late event for that day included), and the next day's breach raises it again.
   * Absent is the same as empty.
   */
  dayWaivers?: readonly DayWaiver[];
}

/** A waiver of a day condition (day_soft, day_hard, day_emergency, failure_burn) for one UTC day. */
export interface DayWaiver {
  id: DayConditionId;
  /** UTC day number (days since the epoch). */
  day: number;
}

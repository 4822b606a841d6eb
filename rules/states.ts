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
  /** Condition ids that hold (e.g. "day_hard"). */
  conditions: string[];
  /** Set for operator actions. */
  actor?: string;
}

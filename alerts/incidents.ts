import { createHash } from 'node:crypto';
import type { StateChange } from '../rules/index.ts';
import { logScopeOf, type GuardrailEventInput, type GuardrailEventRow, type LogScope, type Store } from '../store/index.ts';
import { AlertsInputError } from './errors.ts';

/** An incident opened by an EMERGENCY_STOP: opened, then acknowledged, then resolved with a note. */
export interface Incident {
  id: string;
  scope: string;
  tenantId: string;
  status: 'open' | 'acknowledged' | 'resolved';
  openedAt: number;
  /** The stop's reason and conditions. */
  reason: string;
  seq: number;
  acknowledged?: { actor: string; at: number; note: string };
  resolved?: { actor: string; at: number; note: string };
}

export type IncidentStore = Pick<Store, 'appendGuardrailEvents' | 'guardrailEvents'>;

const DAY_MS = 86_400_000;
const ID = /^inc_[0-9a-f]{24}$/;

/** The incident id of a scope's EMERGENCY_STOP change (same in every process that sees the change). */
export function incidentIdOf(scope: string, seq: number): string {
  return `inc_${createHash('sha256').update(`${scope}\u0000${seq}`).digest('hex').slice(0, 24)}`;
}

/** Folds `incident` guardrail events into incidents (pure; the log is the state). */
export function foldIncidents(rows: readonly GuardrailEventRow[]): Incident[] {
  const byId = new Map<string, Incident>();
  const sorted = [...rows].sort((a, b) => a.at - b.at || a.recordedAt - b.recordedAt);
  for (const r of sorted) {
    const d = (r.details ?? {}) as { action?: string; incident_id?: string; note?: string };
    const id = d.incident_id;
    if (!id) continue;
    if (d.action === 'opened' && !byId.has(id)) {
      byId.set(id, { id, scope: r.scope, tenantId: r.tenantId, status: 'open', openedAt: r.at, reason: r.reason, seq: r.seq });
    }
    const inc = byId.get(id);
    if (!inc) continue;
    if (d.action === 'acknowledged' && inc.status === 'open') {
      inc.status = 'acknowledged';
      inc.acknowledged = { actor: r.actor, at: r.at, note: d.note ?? '' };
    } else if (d.action === 'resolved' && inc.status !== 'resolved') {
      inc.status = 'resolved';
      inc.resolved = { actor: r.actor, at: r.at, note: d.note ?? '' };
    }
  }
  return [...byId.values()].sort((a, b) => b.openedAt - a.openedAt);
}

/**
 * Incidents kept in guardrail_events (kind `incident`): append-only, hash-chained, shared by every API
 * process and rebuilt by reading the log, so nothing lives only in memory. An EMERGENCY_STOP opens one
 * (idempotent per scope and change seq); on-call acknowledges it and resolves it with a note.
 */
export class IncidentLog {
  constructor(
    private readonly store: IncidentStore,
    private readonly opts: { now: () => number; windowDays?: number } = { now: Date.now },
  ) {}

  /** Opens an incident when a scope escalates into EMERGENCY_STOP; anything else is ignored. */
  async onStateChange(c: StateChange): Promise<Incident | undefined> {
    if (c.state !== 'EMERGENCY_STOP' || c.previous === 'EMERGENCY_STOP') return undefined;
    const id = incidentIdOf(c.scope, c.seq);
    await this.#append({ eventId: `incident:${id}:opened`, at: c.at, scope: c.scope, seq: c.seq, actor: c.actor ?? 'forge', reason: c.reason, details: { action: 'opened', incident_id: id, holds: c.holds } });
    const s = logScopeOf(c.scope);
    return { id, scope: c.scope, tenantId: s && 'tenantId' in s ? s.tenantId : '', status: 'open', openedAt: c.at, reason: c.reason, seq: c.seq };
  }

  /** Incidents visible in `scope` (a tenant's, or every tenant's), newest first. */
  async list(scope: LogScope, o: { status?: Incident['status'] } = {}): Promise<Incident[]> {
    const now = this.opts.now();
    const rows = await this.store.guardrailEvents({ scope, from: now - (this.opts.windowDays ?? 90) * DAY_MS, to: now + DAY_MS, kinds: ['incident'] });
    const all = foldIncidents(rows);
    return o.status ? all.filter((i) => i.status === o.status) : all;
  }

  async get(scope: LogScope, id: string): Promise<Incident | undefined> {
    if (!ID.test(id)) throw new AlertsInputError('id', 'is not an incident id (inc_ and 24 hex digits)');
    return (await this.list(scope)).find((i) => i.id === id);
  }

  /** Acknowledges an open incident; `undefined` when not found, the unchanged incident when not open. */
  async acknowledge(scope: LogScope, id: string, actor: string, note = ''): Promise<{ incident: Incident; changed: boolean } | undefined> {
    const inc = await this.get(scope, id);
    if (!inc) return undefined;
    if (inc.status !== 'open') return { incident: inc, changed: false };
    const at = this.opts.now();
    await this.#append({ eventId: `incident:${id}:acknowledged`, at, scope: inc.scope, seq: inc.seq, actor, reason: `incident acknowledged${note ? `: ${note}` : ''}`, details: { action: 'acknowledged', incident_id: id, note } });
    return { incident: { ...inc, status: 'acknowledged', acknowledged: { actor, at, note } }, changed: true };
  }

  /** Resolves an incident with a note (an open one is acknowledged by the same act). */
  async resolve(scope: LogScope, id: string, actor: string, note: string): Promise<{ incident: Incident; changed: boolean } | undefined> {
    if (note.trim() === '') throw new AlertsInputError('note', 'a resolution note is required');
    const inc = await this.get(scope, id);
    if (!inc) return undefined;
    if (inc.status === 'resolved') return { incident: inc, changed: false };
    const at = this.opts.now();
    await this.#append({ eventId: `incident:${id}:resolved`, at, scope: inc.scope, seq: inc.seq, actor, reason: `incident resolved: ${note}`, details: { action: 'resolved', incident_id: id, note } });
    return { incident: { ...inc, status: 'resolved', resolved: { actor, at, note } }, changed: true };
  }

  #append(e: Omit<GuardrailEventInput, 'kind' | 'state'>): Promise<void> {
    return this.store.appendGuardrailEvents([{ ...e, kind: 'incident', state: '' }]);
  }
}

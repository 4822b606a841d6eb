import { createHash } from 'node:crypto';
import { TASK_FINALIZED } from './event.ts';

/**
 * CloudEvents 1.0 in (HTTP structured mode, `application/cloudevents+json`, and batched mode,
 * `application/cloudevents-batch+json`). One CloudEvent carries one task event:
 * - `id` + `source` is the idempotency key (CloudEvents: unique per source): the Forge event id is
 *   `ce:` + the first 40 hex digits of sha256(source, id), so a redelivered CloudEvent is stored once;
 * - `subject` is the tenant;
 * - `data` is the task event (its fields as in /v1/events, without event_id and tenant_id);
 * - `type` must be `forge.task.finalized`.
 */
export type CloudEventOutcome = { ok: true; raw: Record<string, unknown> } | { ok: false; field: string; reason: string };

export function cloudEventId(source: string, id: string): string {
  return `ce:${createHash('sha256').update(JSON.stringify([source, id])).digest('hex').slice(0, 40)}`;
}

export function cloudEventToRaw(ce: unknown): CloudEventOutcome {
  if (ce === null || typeof ce !== 'object' || Array.isArray(ce)) return { ok: false, field: '(event)', reason: 'a CloudEvent must be a JSON object' };
  const e = ce as Record<string, unknown>;
  if (e.specversion !== '1.0') return { ok: false, field: 'specversion', reason: 'must be "1.0"' };
  for (const k of ['id', 'source', 'subject'] as const) {
    if (typeof e[k] !== 'string' || e[k] === '') return { ok: false, field: k, reason: 'must be a non-empty string' };
    if ((e[k] as string).length > 512) return { ok: false, field: k, reason: 'must be at most 512 characters' };
  }
  if (e.type !== TASK_FINALIZED) return { ok: false, field: 'type', reason: `must be "${TASK_FINALIZED}"` };
  if (e.datacontenttype !== undefined && (typeof e.datacontenttype !== 'string' || !/^application\/json\b/.test(e.datacontenttype))) {
    return { ok: false, field: 'datacontenttype', reason: 'must be application/json (or absent)' };
  }
  if (e.data_base64 !== undefined) return { ok: false, field: 'data_base64', reason: 'the task event goes in data as JSON' };
  const data = e.data;
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return { ok: false, field: 'data', reason: 'must be the task event (a JSON object)' };
  const d = data as Record<string, unknown>;
  if (d.event_id !== undefined) return { ok: false, field: 'data.event_id', reason: 'is given by the CloudEvent id and source' };
  if (d.tenant_id !== undefined && d.tenant_id !== e.subject) return { ok: false, field: 'data.tenant_id', reason: 'must be the subject (or absent)' };
  return { ok: true, raw: { ...d, event_id: cloudEventId(e.source as string, e.id as string), tenant_id: e.subject } };
}

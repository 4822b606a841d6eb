import { ApiError } from './errors.ts';

const DAY = 86_400_000;
/** The oldest time a request may name: the event log keeps nothing older. */
export const EARLIEST = Date.parse('2000-01-01T00:00:00Z');

/**
 * A time a request names, parsed and checked to lie in a sane window around now: not before 2000, not
 * more than `futureMs` ahead (default one day). Throws a 400 naming the field.
 */
export function timeField(raw: string, field: string, now: number, futureMs = DAY): number {
  const t = Date.parse(raw);
  if (!Number.isFinite(t)) throw new ApiError('FORGE_ERR_VALIDATION', `${field} must be an ISO 8601 date-time`, field);
  if (t < EARLIEST) throw new ApiError('FORGE_ERR_VALIDATION', `${field} must not be before 2000-01-01`, field);
  if (t > now + futureMs) throw new ApiError('FORGE_ERR_VALIDATION', `${field} must not be later than ${new Date(now + futureMs).toISOString()}`, field);
  return t;
}

let lastIsoMs = NaN;
let lastIso = '';

/**
 * Epoch ms as ISO 8601, remembering the last one: admissions answer their expiry on every request, and at
 * thousands a second most share the millisecond of the one before.
 */
export function isoOf(ms: number): string {
  if (ms !== lastIsoMs) {
    lastIso = new Date(ms).toISOString();
    lastIsoMs = ms;
  }
  return lastIso;
}

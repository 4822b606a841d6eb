import { DAY_MS, dayOf, microsToUsd } from '../../rules/index.ts';
import type { ReserveOutcome } from './types.ts';

/**
 * What a refused reservation tells the caller, for the API's admissions and a runner's own ledger client
 * alike. Spent: the cap frees at the next UTC day (the rolling week too, a day at a time); a run cap never.
 * Only reserved: reservations in flight settle or expire soon, so ask again in a second.
 */
export function refusalOf(out: Extract<ReserveOutcome, { ok: false }>, now: number): { spent: boolean; reason: string; retryAfterMs: number | null } {
  const spent = out.usedMicros >= out.capMicros;
  const retryAfterMs = !spent ? 1000 : out.cap === 'day' || out.cap === 'week' ? (dayOf(now) + 1) * DAY_MS - now : null;
  const reason = spent
    ? `${out.cap} hard cap of ${out.scope} reached: spent ${microsToUsd(out.usedMicros)} of ${microsToUsd(out.capMicros)} USD`
    : `${out.cap} hard cap of ${out.scope} is fully reserved: spent ${microsToUsd(out.usedMicros)} + reserved ${microsToUsd(out.reservedMicros)} of ${microsToUsd(out.capMicros)} USD`;
  return { spent, reason, retryAfterMs };
}

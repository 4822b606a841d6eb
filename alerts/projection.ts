import { DAY_MS, PROJECTION_FROM_MS, projectedMicros } from '../rules/index.ts';
import type { AnomalyAlert } from './anomaly.ts';

/**
 * A projected breach at the day's own pace (pure, integers): the day's burn rate so far times the time left
 * in the UTC day, added to the day's total, reaches B_day_hard while the total is still under B_day_soft.
 * Not before an hour of the day has passed (no wild early pace). An anomaly, beside the guardrail's
 * day_projected WARNING, which projects at the rolling week's rate (steadier, later): the same projection
 * (rules' projectedMicros), at two rates.
 */
export function projectedDayBreach(input: { dayMicros: number; daySoftMicros: number; dayHardMicros: number; now: number }): { projectedMicros: number } | undefined {
  const elapsed = input.now - Math.floor(input.now / DAY_MS) * DAY_MS;
  if (elapsed < PROJECTION_FROM_MS || input.dayMicros >= input.daySoftMicros || input.dayHardMicros <= 0) return undefined;
  const projected = projectedMicros(input.dayMicros, input.dayMicros, elapsed, DAY_MS - elapsed);
  return projected >= input.dayHardMicros ? { projectedMicros: projected } : undefined;
}

/** The projected-breach anomalies of tenant scopes from the guard's live totals and bands. */
export function projectedBreachAnomalies(
  scopes: ReadonlyArray<{ tenantId: string; dayMicros: number; daySoftMicros: number; dayHardMicros: number }>,
  now: number,
): AnomalyAlert[] {
  const day = new Date(now).toISOString().slice(0, 10);
  return scopes.flatMap((s) => {
    const p = projectedDayBreach({ ...s, now });
    if (!p) return [];
    return [{ kind: 'anomaly', anomaly: 'projected_breach', tenantId: s.tenantId, subject: `day_hard:${day}`, value: p.projectedMicros, threshold: s.dayHardMicros, unit: 'usd_micros', detail: 'the day at its burn rate so far reaches B_day_hard before the day ends', at: now } satisfies AnomalyAlert];
  });
}

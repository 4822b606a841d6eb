import type { AnomalyAlert } from './anomaly.ts';

const DAY_MS = 86_400_000;

/**
 * A projected breach (pure, integers): the day's burn rate so far times the time left in the UTC day,
 * added to the day's total, reaches B_day_hard while the total is still under B_day_soft, so on-call
 * hears before the band is crossed. Not before an hour of the day has passed (no wild early pace).
 */
export function projectedDayBreach(input: { dayMicros: number; daySoftMicros: number; dayHardMicros: number; now: number }): { projectedMicros: number } | undefined {
  const dayStart = Math.floor(input.now / DAY_MS) * DAY_MS;
  const elapsed = input.now - dayStart;
  if (elapsed < 3_600_000 || input.dayMicros >= input.daySoftMicros || input.dayHardMicros <= 0) return undefined;
  const projectedMicros = Number((BigInt(input.dayMicros) * BigInt(DAY_MS)) / BigInt(elapsed));
  return projectedMicros >= input.dayHardMicros ? { projectedMicros } : undefined;
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

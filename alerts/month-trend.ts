import type { Store } from '../store/index.ts';
import type { AnomalyAlert } from './anomaly.ts';
import { monthTrend, monthWindow } from './spend.ts';

/**
 * The month-trend anomalies of these tenants at `now` (read from the event log: this month so far and the
 * three months before). Run from the hourly rollup; the dispatcher sends each once per tenant and day.
 */
export async function monthTrendAnomalies(store: Pick<Store, 'totals'>, tenants: readonly string[], now: number): Promise<AnomalyAlert[]> {
  const out: AnomalyAlert[] = [];
  const month = monthWindow(now);
  const previous: Array<{ start: number; end: number }> = [];
  let end = month.start;
  for (let i = 0; i < 3; i++) {
    const w = monthWindow(end - 1);
    previous.push(w);
    end = w.start;
  }
  for (const tenantId of tenants) {
    const so = await store.totals({ tenantId }, { from: month.start, to: now + 1 });
    const prev = await Promise.all(previous.map((w) => store.totals({ tenantId }, { from: w.start, to: w.end })));
    const t = monthTrend({ monthSoFarMicros: so.totalMicros, previousMonthsMicros: prev.map((p) => p.totalMicros), now });
    if (!t) continue;
    out.push({
      kind: 'anomaly',
      anomaly: 'month_trend',
      tenantId,
      subject: new Date(month.start).toISOString().slice(0, 7),
      value: t.projectedMicros,
      threshold: t.factor * t.averageMicros,
      unit: 'usd_micros',
      detail: `projected month at this pace vs ${t.factor} x the average of the previous months with spend`,
      at: now,
    });
  }
  return out;
}

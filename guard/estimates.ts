import type { Micros } from '../rules/index.ts';

/**
 * What the guard learns about estimates, per tenant and task type:
 *  - the ratio of a task's actual cost to the runner's estimate (so a runner that under-estimates by a
 *    steady factor is corrected after a few tasks: each later reservation is scaled by a high quantile of
 *    that ratio, never below 1);
 *  - the task type's actual costs (so a task sent with no estimate reserves a high quantile of them).
 * Samples are bounded per key; the ratios are kept across restarts through guardrail_events.
 */
export const RATIO_QUANTILE = 0.95;
export const COST_QUANTILE = 0.99;
/** Ratios before the learned factor applies ("after a few tasks"). */
export const MIN_RATIO_SAMPLES = 3;
const MAX_SAMPLES = 200;
/** Ratios are kept as integers in parts per million (exact, JSON-friendly). */
const PPM = 1_000_000;

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** The first index of `sorted` whose value is >= v. */
function lowerBound(sorted: readonly number[], v: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class LearnedEstimates {
  private readonly ratios = new Map<string, number[]>();
  private readonly costs = new Map<string, number[]>();
  /** Keys whose ratios changed since the last `takeChanged()`. */
  private readonly changed = new Set<string>();
  /**
   * Each key's samples kept sorted beside them (ratios, costs), updated in place as a sample comes and the
   * oldest goes: every admission asks for a quantile, and a copy and a sort of up to 200 samples per
   * admission was about 2 µs of it once a runner had settled a few tasks.
   */
  private readonly sortedOf = new Map<Map<string, number[]>, Map<string, number[]>>();

  /** The `q` quantile of `m`'s samples under `key`; undefined with none. */
  private quantileOf(m: Map<string, number[]>, key: string, q: number): number | undefined {
    const arr = m.get(key);
    if (!arr || arr.length === 0) return undefined;
    let all = this.sortedOf.get(m);
    if (!all) this.sortedOf.set(m, (all = new Map()));
    let sorted = all.get(key);
    if (!sorted) all.set(key, (sorted = [...arr].sort((a, b) => a - b)));
    return quantile(sorted, q);
  }

  static key(tenantId: string, taskType: string): string {
    return `${tenantId}\u0000${taskType}`;
  }

  private push(m: Map<string, number[]>, key: string, v: number): void {
    let arr = m.get(key);
    if (!arr) m.set(key, (arr = []));
    arr.push(v);
    const sorted = this.sortedOf.get(m)?.get(key);
    if (sorted) sorted.splice(lowerBound(sorted, v), 0, v);
    if (arr.length > MAX_SAMPLES) {
      const old = arr.shift()!;
      if (sorted) sorted.splice(lowerBound(sorted, old), 1);
    }
  }

  /** A settled task whose runner sent an estimate: learn actual / estimate. */
  noteRatio(tenantId: string, taskType: string, estimateMicros: Micros, actualMicros: Micros): void {
    if (estimateMicros <= 0) return;
    const key = LearnedEstimates.key(tenantId, taskType);
    this.push(this.ratios, key, Math.round((actualMicros * PPM) / estimateMicros));
    this.changed.add(key);
  }

  /** A finalized task's actual cost. */
  noteCost(tenantId: string, taskType: string, actualMicros: Micros): void {
    this.push(this.costs, LearnedEstimates.key(tenantId, taskType), actualMicros);
  }

  /** The factor (>= 1, in ppm) a runner's estimate is scaled by; undefined before enough history. */
  factorPpm(tenantId: string, taskType: string): number | undefined {
    const key = LearnedEstimates.key(tenantId, taskType);
    if ((this.ratios.get(key)?.length ?? 0) < MIN_RATIO_SAMPLES) return undefined;
    return Math.max(PPM, this.quantileOf(this.ratios, key, RATIO_QUANTILE)!);
  }

  /** A runner's estimate scaled by the learned factor (rounded up to a whole micro-dollar). */
  scale(tenantId: string, taskType: string, estimateMicros: Micros): { micros: Micros; factorPpm?: number } {
    const f = this.factorPpm(tenantId, taskType);
    if (f === undefined || f === PPM) return { micros: estimateMicros };
    return { micros: Math.ceil((estimateMicros * f) / PPM), factorPpm: f };
  }

  /** A high quantile of the task type's actual costs; undefined with no history. */
  costQuantile(tenantId: string, taskType: string): Micros | undefined {
    return this.quantileOf(this.costs, LearnedEstimates.key(tenantId, taskType), COST_QUANTILE);
  }

  /** The ratios changed since the last call, to persist. */
  takeChanged(): Array<{ tenantId: string; taskType: string; ratiosPpm: number[] }> {
    const out: Array<{ tenantId: string; taskType: string; ratiosPpm: number[] }> = [];
    for (const key of this.changed) {
      const [tenantId, taskType] = key.split('\u0000') as [string, string];
      out.push({ tenantId, taskType, ratiosPpm: [...(this.ratios.get(key) ?? [])] });
    }
    this.changed.clear();
    return out;
  }

  /** Start-up: ratios from the last persisted snapshot, costs from the event log. */
  seedRatios(tenantId: string, taskType: string, ratiosPpm: readonly number[]): void {
    this.sortedOf.get(this.ratios)?.delete(LearnedEstimates.key(tenantId, taskType));
    this.ratios.set(LearnedEstimates.key(tenantId, taskType), ratiosPpm.filter((r) => Number.isSafeInteger(r) && r >= 0).slice(-MAX_SAMPLES));
  }

  seedCosts(tenantId: string, taskType: string, costsMicros: readonly number[]): void {
    this.sortedOf.get(this.costs)?.delete(LearnedEstimates.key(tenantId, taskType));
    this.costs.set(LearnedEstimates.key(tenantId, taskType), costsMicros.slice(-MAX_SAMPLES));
  }
}

import type { CostEvent } from '../store/index.ts';
import { FifoMap } from './fifo.ts';

/**
 * The normal cost of a task, learned from finalized tasks (F-044): per tenant and task type (and model,
 * where the event names one), the median of the last `window` successful tasks' totals once `minHistory`
 * of them are known; until then the scope's unit cap. A task whose in-flight cost passes `factor` x normal
 * is an anomaly (the runner kills it). Integer micro-dollars throughout.
 *
 * Derived from the event log only: fed every accepted event, and seeded from the log at start, so a restart
 * learns the same normals.
 */
export interface CostBaselineOptions {
  /** Successful tasks kept per key (default 50). */
  window?: number;
  /** Tasks needed before the median is trusted (default 5). */
  minHistory?: number;
  /** Ceiling = factor x normal (default 3). */
  factor?: number;
  /** Distinct keys kept (oldest dropped; default 10,000). */
  maxKeys?: number;
}

export interface NormalCost {
  /** USD micros. */
  normalMicros: number;
  /** Kill above this, USD micros (factor x normal). */
  ceilingMicros: number;
  /** `median` of `samples` tasks, or `unit_cap` while history is short. */
  source: 'median' | 'unit_cap';
  samples: number;
  factor: number;
}

export class CostBaseline {
  readonly #window: number;
  readonly #min: number;
  readonly #factor: number;
  readonly #maxKeys: number;
  /** Oldest key first out (FifoMap: a Map or Set used as a queue rescans its deleted slots). */
  readonly #hist = new FifoMap<string, number[]>();
  readonly #seen = new FifoMap<string, true>();

  constructor(o: CostBaselineOptions = {}) {
    this.#window = o.window ?? 50;
    this.#min = o.minHistory ?? 5;
    this.#factor = o.factor ?? 3;
    this.#maxKeys = o.maxKeys ?? 10_000;
  }

  static key(tenantId: string, taskType: string, model = ''): string {
    return `${tenantId}\u0000${taskType}\u0000${model}`;
  }

  /** One finalized task. Failed and retried tasks do not teach what normal is; a replayed event id is counted once. */
  observe(ev: Pick<CostEvent, 'eventId' | 'tenantId' | 'taskType' | 'model' | 'status' | 'totalMicros'>): void {
    if (ev.status !== 'success' || this.#seen.has(ev.eventId)) return;
    this.#seen.evict(0, this.#maxKeys * this.#window - 1);
    this.#seen.set(ev.eventId, true);
    for (const k of [CostBaseline.key(ev.tenantId, ev.taskType), ...(ev.model ? [CostBaseline.key(ev.tenantId, ev.taskType, ev.model)] : [])]) {
      let h = this.#hist.get(k);
      if (!h) {
        this.#hist.evict(0, this.#maxKeys - 1);
        this.#hist.set(k, (h = []));
      }
      h.push(ev.totalMicros);
      if (h.length > this.#window) h.shift();
    }
  }

  /**
   * Older tasks (oldest first), learned after newer ones were observed (the start-up reads the log's history
   * in the background while live events already arrive): each key's older totals go before the ones it has,
   * and its window keeps the newest, as if they had been observed in order.
   */
  learnHistory(evs: Iterable<Pick<CostEvent, 'eventId' | 'tenantId' | 'taskType' | 'model' | 'status' | 'totalMicros'>>): void {
    const older = new Map<string, number[]>();
    for (const ev of evs) {
      if (ev.status !== 'success' || this.#seen.has(ev.eventId)) continue;
      this.#seen.evict(0, this.#maxKeys * this.#window - 1);
      this.#seen.set(ev.eventId, true);
      for (const k of [CostBaseline.key(ev.tenantId, ev.taskType), ...(ev.model ? [CostBaseline.key(ev.tenantId, ev.taskType, ev.model)] : [])]) {
        let h = older.get(k);
        if (!h) older.set(k, (h = []));
        h.push(ev.totalMicros);
        if (h.length > this.#window) h.shift();
      }
    }
    for (const [k, h] of older) {
      const known = this.#hist.get(k);
      if (!known) this.#hist.evict(0, this.#maxKeys - 1);
      this.#hist.set(k, [...h, ...(known ?? [])].slice(-this.#window));
    }
  }

  /** The normal cost of a task of this type (and model, when its own history is long enough). */
  normal(tenantId: string, taskType: string, unitCapMicros: number, model = ''): NormalCost {
    const byModel = model ? this.#hist.get(CostBaseline.key(tenantId, taskType, model)) : undefined;
    const h = byModel && byModel.length >= this.#min ? byModel : this.#hist.get(CostBaseline.key(tenantId, taskType));
    if (!h || h.length < this.#min) {
      return { normalMicros: unitCapMicros, ceilingMicros: unitCapMicros * this.#factor, source: 'unit_cap', samples: h?.length ?? 0, factor: this.#factor };
    }
    const sorted = [...h].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    // The lower median of an even count keeps it an integer (no float in money).
    const median = sorted.length % 2 === 1 ? sorted[mid]! : sorted[mid - 1]!;
    return { normalMicros: median, ceilingMicros: median * this.#factor, source: 'median', samples: h.length, factor: this.#factor };
  }
}

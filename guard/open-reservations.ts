import type { Micros } from '../rules/index.ts';
import { reservationSerialOf } from './ledger/reservation-id.ts';

/**
 * What a settle needs to learn from of the reservations this process made (the task type, the runner's
 * estimate), for the newest `size` of them: a ring indexed by the reservation id's serial, so an admission
 * writes into slots, with no map insert, no eviction and no object per reservation (before: a FifoMap,
 * whose insert and eviction at its bound were a fifth of an admission's own CPU). Older entries are
 * overwritten, which only loses a learning sample, as the bound did before.
 */
export class OpenReservations {
  private ids: Array<string | undefined> = [];
  private taskTypes: Array<string | undefined> = [];
  /** The runner's estimate, USD micros; NaN: none. */
  private runner: Float64Array | undefined;

  constructor(private readonly size = 100_000) {}

  /** Remembers reservation `id` (made here with serial `serial`). */
  set(id: string, serial: number, taskType: string, runnerMicros: Micros | undefined): void {
    if (!this.runner) {
      // Allocated at the first admission: a process (or test) that admits nothing keeps no ring.
      this.ids = new Array<string | undefined>(this.size).fill(undefined);
      this.taskTypes = new Array<string | undefined>(this.size).fill(undefined);
      this.runner = new Float64Array(this.size);
    }
    const i = serial % this.size;
    this.ids[i] = id;
    this.taskTypes[i] = taskType;
    this.runner[i] = runnerMicros ?? NaN;
  }

  /** What was remembered of reservation `id`, forgotten as it is read; undefined when not (or no longer) here. */
  take(id: string): { taskType: string; runnerMicros: Micros | undefined } | undefined {
    const serial = reservationSerialOf(id);
    if (serial === undefined || !this.runner) return undefined;
    const i = serial % this.size;
    if (this.ids[i] !== id) return undefined;
    const r = this.runner[i]!;
    const out = { taskType: this.taskTypes[i]!, runnerMicros: Number.isNaN(r) ? undefined : r };
    this.ids[i] = undefined;
    this.taskTypes[i] = undefined;
    return out;
  }
}

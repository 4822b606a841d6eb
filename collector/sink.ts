import type { CostEvent } from '../store/index.ts';

/**
 * Where accepted events go. `write` resolves once they are durably committed (idempotent by eventId), with
 * `fresh[i]` true when this write appended events[i] and false when the log already held it (a replay).
 * Only fresh events reach live totals, across restarts and processes. `conflicts` lists the events refused
 * because the tenant's event_id is taken by another event (another event time or body): not stored.
 */
export interface EventSink {
  write(events: CostEvent[]): Promise<{ fresh: readonly boolean[]; conflicts?: ReadonlyArray<{ index: number; storedEventTime: number }> }>;
}

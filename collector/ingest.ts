import type { CostEvent } from '../store/index.ts';
import type { EventSink } from './sink.ts';
import { CollectorError, UnavailableError } from './errors.ts';
import type { ChainReader, NativePriceSource } from './chain.ts';
import { parseTaskEvent, type Rejection, type TaskEvent } from './event.ts';
import type { ForgeMetrics } from './metrics.ts';
import { priceReportedGas, priceTaskEvent, type PriceOutcome } from './price.ts';
import type { Pricing } from './pricing.ts';

/** One item of a request: where it was (batch index / OTLP record path) and its raw event object. */
export interface RawItem {
  index: number;
  /** OTLP record path, e.g. resourceLogs[0].scopeLogs[0].logRecords[3]; absent for JSON events. */
  path?: string;
  raw: unknown;
}

export interface AcceptedItem {
  index: number;
  path?: string;
  eventId: string;
  totalMicros: number;
  /** The log already held this event_id (a retry or replay): stored once, counted once. */
  duplicate: boolean;
}

export interface RejectedItem extends Rejection {
  index: number;
  path?: string;
}

export interface IngestResult {
  accepted: AcceptedItem[];
  rejected: RejectedItem[];
  /** The accepted events as stored (for callers that want the computed amounts). */
  events: CostEvent[];
}

export interface IngestorDeps {
  sink: EventSink;
  pricing: Pricing;
  chain?: ChainReader;
  nativePrice: NativePriceSource;
  knownTenant(tenantId: string): boolean | Promise<boolean>;
  /** Called after the durable write with the events this write appended (never a replay): rule evaluation, live counters. */
  onAccepted?(events: CostEvent[]): void | Promise<void>;
  /** Where failures of onAccepted are reported (the events are stored regardless). */
  onError?(err: unknown): void;
  metrics?: ForgeMetrics;
  /** Tasks expected today for storage allocation (yesterday's count); undefined = the configured estimate. */
  expectedTasksDay?(): number | undefined | Promise<number | undefined>;
  now?(): number;
  /** Parallel chain lookups per request (default 8). */
  pricingConcurrency?: number;
}

/** Events checked between two turns of the event loop. */
const YIELD_EVERY = 250;

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * The collector's pipeline, independent of HTTP: validate -> authorize -> price -> durable write ->
 * metrics + onAccepted. Rejected items are never written. An event whose event_id its tenant already used for
 * another event (another event time or body) is refused by the store's write (FORGE_ERR_EVENT_ID_CONFLICT,
 * field event_id) and the rest of the request stands, as with an invalid event; a resend of the same event
 * is accepted as a duplicate. If pricing or the write fails for a reason that
 * is not the event's fault (chain, price feed, store), the whole call throws an UnavailableError and
 * nothing of it counts as accepted; the producer retries with the same event ids.
 */
export class Ingestor {
  constructor(private readonly deps: IngestorDeps) {}

  async ingest(items: readonly RawItem[], canWrite: (tenantId: string) => boolean): Promise<IngestResult> {
    const d = this.deps;
    const now = d.now?.() ?? Date.now();
    const rejected: RejectedItem[] = [];
    const valid: Array<{ item: RawItem; ev: TaskEvent }> = [];
    const firstIndex = new Map<string, number>();
    // One lookup per distinct tenant of the request, not one per event.
    const known = new Map<string, boolean>();
    let sinceYield = 0;
    for (const item of items) {
      // A large batch lets the event loop run every few hundred events: the store's flush under way gets its
      // replies (and hands the engine its next statement) without waiting for this whole batch to be checked.
      if (++sinceYield > YIELD_EVERY) {
        sinceYield = 0;
        await new Promise((r) => setImmediate(r));
      }
      const at = item.path !== undefined ? { index: item.index, path: item.path } : { index: item.index };
      const p = parseTaskEvent(item.raw, { now, maxFutureSkewMs: d.pricing.limits.maxFutureSkewMs });
      if (!p.ok) {
        rejected.push({ ...at, code: p.code, field: p.field, reason: p.reason });
        continue;
      }
      if (!canWrite(p.event.tenantId)) {
        rejected.push({ ...at, code: 'FORGE_ERR_FORBIDDEN_TENANT', field: 'tenant_id', reason: `the caller may not write events for tenant "${p.event.tenantId}"` });
        continue;
      }
      let isKnown = known.get(p.event.tenantId);
      if (isKnown === undefined) known.set(p.event.tenantId, (isKnown = await d.knownTenant(p.event.tenantId)));
      if (!isKnown) {
        rejected.push({ ...at, code: 'FORGE_ERR_VALIDATION', field: 'tenant_id', reason: `unknown tenant "${p.event.tenantId}"` });
        continue;
      }
      const first = firstIndex.get(p.event.eventId);
      if (first !== undefined) {
        rejected.push({ ...at, code: 'FORGE_ERR_VALIDATION', field: 'event_id', reason: `duplicate event_id in this request (first at index ${first})` });
        continue;
      }
      firstIndex.set(p.event.eventId, item.index);
      valid.push({ item, ev: p.event });
    }

    const expected = valid.length > 0 ? await d.expectedTasksDay?.() : undefined;
    const priceDeps = {
      pricing: d.pricing,
      nativePrice: d.nativePrice,
      now,
      ...(d.chain ? { chain: d.chain } : {}),
      ...(expected !== undefined ? { expectedTasksDay: expected } : {}),
    };
    // The usual events (gas reported, or none) are priced in one pass, the native price read once for the
    // request (when one needs it); events naming a transaction wait for their chain lookups, a few at a time.
    const priced = new Array<PriceOutcome>(valid.length);
    const onChain: number[] = [];
    let nativeUsd: string | undefined;
    for (let i = 0; i < valid.length; i++) {
      const ev = valid[i]!.ev;
      let r = priceReportedGas(ev, priceDeps, nativeUsd);
      if (r === undefined && ev.gas.kind !== 'tx') r = priceReportedGas(ev, priceDeps, (nativeUsd = await d.nativePrice.usd()));
      if (r === undefined) onChain.push(i);
      else priced[i] = r;
    }
    const looked = await mapLimit(onChain, d.pricingConcurrency ?? 8, (i) => priceTaskEvent(valid[i]!.ev, priceDeps));
    onChain.forEach((i, k) => (priced[i] = looked[k]!));
    const events: CostEvent[] = [];
    const acceptedAt: RawItem[] = [];
    priced.forEach((r, i) => {
      const { item } = valid[i]!;
      if (r.ok) {
        events.push(r.event);
        acceptedAt.push(item);
      } else rejected.push({ ...(item.path !== undefined ? { index: item.index, path: item.path } : { index: item.index }), code: r.code, field: r.field, reason: r.reason });
    });
    rejected.sort((a, b) => a.index - b.index);
    for (const r of rejected) d.metrics?.recordRejected(r.code);

    let stored: readonly boolean[] = [];
    const conflicting = new Set<number>();
    if (events.length > 0) {
      const t0 = performance.now();
      try {
        const receipt = await d.sink.write(events); // durable from here on
        stored = receipt.fresh;
        // An id the tenant used for another event: refused like an invalid event, the rest of the request stands.
        for (const c of receipt.conflicts ?? []) {
          const item = acceptedAt[c.index]!;
          const e = events[c.index]!;
          conflicting.add(c.index);
          rejected.push({
            ...(item.path !== undefined ? { index: item.index, path: item.path } : { index: item.index }),
            code: 'FORGE_ERR_EVENT_ID_CONFLICT',
            field: 'event_id',
            reason:
              `event_id "${e.eventId}" was already accepted for another event (stored with event time ${new Date(c.storedEventTime).toISOString()}); ` +
              'a resend must be identical, a changed event needs a new event_id',
          });
          d.metrics?.recordRejected('FORGE_ERR_EVENT_ID_CONFLICT');
        }
      } catch (e) {
        d.metrics?.recordFlush((performance.now() - t0) / 1000, events.length, false);
        throw e instanceof CollectorError ? e : new UnavailableError('FORGE_ERR_STORE_UNAVAILABLE', `store write failed: ${(e as Error)?.message ?? String(e)}`, { cause: e });
      }
      d.metrics?.recordFlush((performance.now() - t0) / 1000, events.length, true);
    }

    // The store's answer decides: only events this write appended go on to metrics and live totals, so a
    // replay after a restart, or the same event through another process, never counts twice.
    const fresh = events.filter((_, i) => stored[i] === true);
    const accepted: AcceptedItem[] = [];
    const kept: CostEvent[] = [];
    events.forEach((e, i) => {
      if (conflicting.has(i)) return;
      kept.push(e);
      accepted.push({
        index: acceptedAt[i]!.index,
        ...(acceptedAt[i]!.path !== undefined ? { path: acceptedAt[i]!.path } : {}),
        eventId: e.eventId,
        totalMicros: e.totalMicros,
        duplicate: stored[i] !== true,
      });
    });
    if (conflicting.size > 0) rejected.sort((x, y) => x.index - y.index);
    if (d.metrics) {
      d.metrics.recordAccepted(kept.length);
      if (fresh.length > 0) d.metrics.recordEvents(fresh);
    }
    if (fresh.length > 0 && d.onAccepted) {
      try {
        await d.onAccepted(fresh);
      } catch (e) {
        // Stored is stored: the hourly recompute from the event log reconciles what evaluation missed.
        d.onError?.(e);
      }
    }
    return { accepted, rejected, events: kept };
  }
}

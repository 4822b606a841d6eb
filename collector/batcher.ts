import type { CostEvent } from '../store/index.ts';
import { CollectorError, UnavailableError } from './errors.ts';

/** Where accepted events go. `write` resolves once they are durably committed (idempotent by eventId). */
export interface EventSink {
  write(events: CostEvent[]): Promise<unknown>;
}

export interface BatchingOptions {
  /** A flush starts as soon as this many events wait (default 1000). */
  maxEvents?: number;
  /** ...or this long after the first one arrived (default 5 ms). */
  maxDelayMs?: number;
  /** Writes are refused (503) while this many events wait: backpressure instead of unbounded memory (default 100,000). */
  maxBuffered?: number;
  /** Observes each flush (duration in seconds) and the buffer depth. */
  onFlush?(seconds: number, events: number, ok: boolean): void;
}

interface Job {
  events: CostEvent[];
  resolve(): void;
  reject(e: unknown): void;
}

/**
 * Group commit in front of the store: concurrent requests' events are written together, one flush at a
 * time (never two overlapping), on size or after a short delay. Each caller's promise settles with the
 * flush that carried its events, so "resolved" still means "committed". A failed flush rejects every
 * caller in it with FORGE_ERR_STORE_UNAVAILABLE; they answer 503 and producers retry with the same
 * event_id (the store counts it once). close() flushes what waits and refuses new writes.
 */
export class BatchingSink implements EventSink {
  private queue: Job[] = [];
  private queued = 0;
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private idle: Array<() => void> = [];
  private readonly maxEvents: number;
  private readonly maxDelayMs: number;
  private readonly maxBuffered: number;

  constructor(
    private readonly inner: EventSink,
    private readonly opts: BatchingOptions = {},
  ) {
    this.maxEvents = opts.maxEvents ?? 1000;
    this.maxDelayMs = opts.maxDelayMs ?? 5;
    this.maxBuffered = opts.maxBuffered ?? 100_000;
  }

  /** Events waiting to be written (not counting the flush in progress). */
  get depth(): number {
    return this.queued;
  }

  write(events: CostEvent[]): Promise<void> {
    if (this.closed) return Promise.reject(new CollectorError('FORGE_ERR_COLLECTOR_CLOSED', 'the collector is shutting down', 503));
    if (events.length === 0) return Promise.resolve();
    if (this.queued + events.length > this.maxBuffered) {
      return Promise.reject(new UnavailableError('FORGE_ERR_STORE_UNAVAILABLE', `collector buffer full (${this.queued} events waiting); retry later`));
    }
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ events, resolve, reject });
      this.queued += events.length;
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.running || this.queue.length === 0) return;
    if (this.queued >= this.maxEvents || this.closed) {
      clearTimeout(this.timer);
      this.timer = undefined;
      void this.flushOnce();
    } else {
      this.timer ??= setTimeout(() => {
        this.timer = undefined;
        void this.flushOnce();
      }, this.maxDelayMs);
    }
  }

  private async flushOnce(): Promise<void> {
    if (this.running || this.queue.length === 0) return;
    this.running = true;
    // Whole jobs only: a request's events are committed together or not at all.
    const jobs: Job[] = [];
    let n = 0;
    while (this.queue.length > 0 && (n === 0 || n + this.queue[0]!.events.length <= this.maxEvents)) {
      const j = this.queue.shift()!;
      jobs.push(j);
      n += j.events.length;
    }
    this.queued -= n;
    const batch = jobs.length === 1 ? jobs[0]!.events : jobs.flatMap((j) => j.events);
    const t0 = performance.now();
    try {
      await this.inner.write(batch);
      this.observe(() => this.opts.onFlush?.((performance.now() - t0) / 1000, n, true));
      for (const j of jobs) j.resolve();
    } catch (e) {
      this.observe(() => this.opts.onFlush?.((performance.now() - t0) / 1000, n, false));
      const err =
        e instanceof CollectorError
          ? e
          : new UnavailableError('FORGE_ERR_STORE_UNAVAILABLE', `store write failed: ${(e as Error)?.message ?? String(e)}`, { cause: e });
      for (const j of jobs) j.reject(err);
    } finally {
      this.running = false;
      if (this.queue.length > 0) {
        // What arrived during the write goes out at once: it has already waited one write.
        clearTimeout(this.timer);
        this.timer = undefined;
        void this.flushOnce();
      } else {
        for (const f of this.idle.splice(0)) f();
      }
    }
  }

  /** Observers (metrics) must never break a flush. */
  private observe(fn: () => void): void {
    try {
      fn();
    } catch {
      /* metrics are best effort */
    }
  }

  /** Resolves when everything queued so far has been written (or failed). */
  flush(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.idle.push(resolve);
      clearTimeout(this.timer);
      this.timer = undefined;
      void this.flushOnce();
    });
  }

  /** Flushes what waits, then refuses new writes. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
  }
}

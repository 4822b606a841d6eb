import { randomUUID } from 'node:crypto';
import type { Attempt, Channel, ChannelMessage } from './channel.ts';
import { channelFor } from './channels/index.ts';
import type { Clock } from './clock.ts';
import type { DestinationConfig } from './config.ts';
import type { AlertLogRecord, AlertLogStatus } from './log-sink.ts';
import type { Redactor } from './secret.ts';
import { TokenBucket } from './token-bucket.ts';
import type { AlertView, EventAction } from './types.ts';

/** One message for one destination. */
export interface OutboundMessage extends ChannelMessage {
  /** Sent at most once per destination: dedup key + event action (+ a notification number for notifications). */
  idempotencyKey: string;
  view: AlertView;
  eventAction: EventAction;
}

export type DeliveryOutcome =
  | { status: 'delivered'; destination: string; attempts: number; httpStatus: number }
  | { status: 'duplicate'; destination: string }
  | { status: 'rate_limited'; destination: string }
  | { status: 'dead_letter'; destination: string; attempts: number; error: string; httpStatus?: number };

export interface SenderDeps {
  fetch: typeof fetch;
  clock: Clock;
  redactor: Redactor;
  random: () => number;
  /** Aborts waits and requests when the dispatcher stops. */
  signal: AbortSignal;
  /** PagerDuty payload.source. */
  source: string;
  /** Persists a record; never rejects. */
  record(rec: AlertLogRecord): Promise<void>;
  log(level: 'info' | 'warn' | 'error', fields: Record<string, unknown>, msg: string): void;
}

/**
 * Sends to one destination: a token bucket in front, retries with exponential backoff (and jitter)
 * on network errors, timeouts, 408, 429 and 5xx, a dead letter when attempts run out or the
 * destination answers a permanent 4xx. Idempotent by `idempotencyKey`: a key already delivered (or in
 * flight) is not sent again.
 */
export class DestinationSender {
  readonly #bucket: TokenBucket;
  readonly #delivered = new Map<string, number>();
  readonly #inflight = new Map<string, Promise<DeliveryOutcome>>();
  readonly #channel: Channel;

  constructor(
    readonly dest: DestinationConfig,
    private readonly deps: SenderDeps,
  ) {
    this.#bucket = new TokenBucket(dest.rateLimit.burst, dest.rateLimit.perMinute / 60, deps.clock);
    this.#channel = channelFor(dest, { fetch: deps.fetch, redactor: deps.redactor, source: deps.source });
  }

  /** True for paging channels (PagerDuty): they get trigger / acknowledge / resolve, not notifications. */
  get pages(): boolean {
    return this.#channel.pages;
  }

  /** Releases the channel's connections. */
  close(): void {
    this.#channel.close?.();
  }

  get name(): string {
    return this.dest.name;
  }

  get type(): DestinationConfig['type'] {
    return this.dest.type;
  }

  /** True when this key was delivered here. */
  has(idempotencyKey: string): boolean {
    return this.#delivered.has(idempotencyKey);
  }

  /** Marks a key delivered by an earlier life of Forge (the alert log), at `at` (epoch ms): not sent again. */
  remember(idempotencyKey: string, at: number): void {
    this.#delivered.set(idempotencyKey, at);
  }

  /** Allows a key to be sent again (an incident was resolved; a new breach is a new incident). */
  forget(idempotencyKey: string): void {
    this.#delivered.delete(idempotencyKey);
  }

  /** Drops idempotency entries older than `before` (epoch ms). */
  prune(before: number): void {
    for (const [k, at] of this.#delivered) if (at < before) this.#delivered.delete(k);
  }

  send(msg: OutboundMessage): Promise<DeliveryOutcome> {
    if (this.#delivered.has(msg.idempotencyKey)) {
      return Promise.resolve({ status: 'duplicate', destination: this.name });
    }
    const running = this.#inflight.get(msg.idempotencyKey);
    if (running) return running.then((o) => (o.status === 'delivered' ? { status: 'duplicate', destination: this.name } : o));
    const p = this.#send(msg).finally(() => this.#inflight.delete(msg.idempotencyKey));
    this.#inflight.set(msg.idempotencyKey, p);
    return p;
  }

  async #send(msg: OutboundMessage): Promise<DeliveryOutcome> {
    const { clock, signal } = this.deps;
    const wait = this.#bucket.reserve(this.dest.rateLimit.maxWaitMs);
    if (wait === undefined) {
      const error = `rate limit of ${this.dest.rateLimit.perMinute}/min (burst ${this.dest.rateLimit.burst}) exhausted`;
      await this.#record(msg, 'rate_limited', 0, { error, payload: true });
      this.deps.log('error', this.#fields(msg, { error }), 'alert dropped by rate limit');
      return { status: 'rate_limited', destination: this.name };
    }
    const retry = this.dest.retry;
    let last: Attempt = { ok: false, retryable: false, error: 'not attempted' };
    let attempt = 0;
    try {
      if (wait > 0) await clock.sleep(wait, signal);
      for (attempt = 1; attempt <= retry.maxAttempts; attempt++) {
        last = await this.#attempt(msg);
        if (last.ok) {
          this.#delivered.set(msg.idempotencyKey, clock.now());
          await this.#record(msg, 'delivered', attempt, { httpStatus: last.httpStatus });
          this.deps.log('info', this.#fields(msg, { attempt, httpStatus: last.httpStatus }), 'alert delivered');
          return { status: 'delivered', destination: this.name, attempts: attempt, httpStatus: last.httpStatus };
        }
        await this.#record(msg, 'failed', attempt, { httpStatus: last.httpStatus, error: last.error });
        this.deps.log('warn', this.#fields(msg, { attempt, httpStatus: last.httpStatus, error: last.error }), 'alert delivery attempt failed');
        if (!last.retryable || attempt === retry.maxAttempts) break;
        await clock.sleep(this.#backoff(attempt, last.retryAfterMs), signal);
      }
    } catch (e) {
      // Only an abort reaches here (sleep rejects on stop).
      last = { ok: false, retryable: false, error: `dispatcher stopped before delivery: ${this.deps.redactor.error(e)}` };
    }
    const attempts = Math.min(attempt, retry.maxAttempts);
    const error = last.ok ? 'unknown' : last.error;
    const httpStatus = last.ok ? undefined : last.httpStatus;
    await this.#record(msg, 'dead_letter', attempts, { httpStatus, error, payload: true });
    this.deps.log('error', this.#fields(msg, { attempts, httpStatus, error }), 'alert dead-lettered');
    return { status: 'dead_letter', destination: this.name, attempts, error, ...(httpStatus !== undefined ? { httpStatus } : {}) };
  }

  #backoff(attempt: number, retryAfterMs?: number): number {
    const { initialBackoffMs, maxBackoffMs } = this.dest.retry;
    const base = initialBackoffMs * 2 ** (attempt - 1);
    const jittered = base * (0.75 + 0.5 * this.deps.random());
    return Math.round(Math.min(maxBackoffMs, Math.max(jittered, retryAfterMs ?? 0)));
  }

  #attempt(msg: OutboundMessage): Promise<Attempt> {
    const timeout = AbortSignal.timeout(this.dest.retry.timeoutMs);
    return this.#channel.deliver(msg, AbortSignal.any([timeout, this.deps.signal]));
  }

  #fields(msg: OutboundMessage, extra: Record<string, unknown>): Record<string, unknown> {
    return {
      destination: this.name,
      destinationType: this.type,
      dedupKey: msg.view.dedupKey,
      eventAction: msg.eventAction,
      scope: msg.view.scope,
      ...extra,
    };
  }

  #record(
    msg: OutboundMessage,
    status: AlertLogStatus,
    attempt: number,
    o: { httpStatus?: number | undefined; error?: string | undefined; payload?: boolean },
  ): Promise<void> {
    const rec: AlertLogRecord = {
      id: randomUUID(),
      at: this.deps.clock.now(),
      status,
      destination: this.name,
      destinationType: this.type,
      kind: msg.view.kind,
      severity: msg.view.severity,
      scope: msg.view.scope,
      condition: msg.view.condition,
      ...(msg.view.state ? { state: msg.view.state } : {}),
      dedupKey: msg.view.dedupKey,
      eventAction: msg.eventAction,
      attempt,
      ...(o.httpStatus !== undefined ? { httpStatus: o.httpStatus } : {}),
      ...(o.error !== undefined ? { error: this.deps.redactor.text(o.error) } : {}),
      summary: msg.view.summary,
      ...(o.payload ? { payload: this.deps.redactor.text(JSON.stringify(this.#channel.render(msg))) } : {}),
    };
    return this.deps.record(rec);
  }
}

import { GUARD_STATES, parseScope, type ScopeKey, type StateChange } from '../rules/index.ts';
import { GuardError, defaultErrorHandler, type ErrorHandler } from './errors.ts';

/**
 * The halt bus carries guardrail state changes from the rules engine to runners and billing.
 * Two implementations, one contract suite (test/halt-contract.test.ts): in-process (embedded default)
 * and Redis (pub/sub for the push, a durable key per scope for the state).
 *
 * Ordering: every change carries a per-scope `seq`. `publish` refuses a change whose seq is not above
 * the scope's stored one, and every subscription ignores a change whose seq is not above the last it
 * delivered for that scope, so a late or replayed message never undoes a newer state.
 */
export type HaltHandler = (change: StateChange) => void;

export type PublishOutcome = 'published' | 'stale';

export interface HaltBus {
  /**
   * Writes the scope's durable state and pushes the change to subscribers. Resolves 'stale' (nothing
   * written, nothing pushed) when the scope already holds a change with this seq or a newer one.
   */
  publish(change: StateChange): Promise<PublishOutcome>;
  /**
   * Calls handler for every newer change of any scope, in seq order per scope. Handlers run
   * synchronously and must not throw (a throw is reported to the bus's onError). Returns unsubscribe.
   */
  subscribe(handler: HaltHandler): () => void;
  /** Resolves once pushes reach subscribers (the Redis subscription is acknowledged). */
  ready(): Promise<void>;
  /** The scope's durable state; undefined when no change was ever published for it. */
  current(scope: ScopeKey): Promise<StateChange | undefined>;
  /** Every scope a change was ever published for (a restart re-reads their durable states). */
  scopes(): Promise<ScopeKey[]>;
  close(): Promise<void>;
}

/** Validates a change before it is stored or pushed; the error names the field. */
export function validateStateChange(c: StateChange): void {
  const bad = (field: string, msg: string): never => {
    throw new GuardError('FORGE_ERR_HALT_BUS_INPUT', `${field} ${msg}`, { field });
  };
  if (typeof c !== 'object' || c === null) bad('change', 'must be an object');
  if (typeof c.scope !== 'string' || !parseScope(c.scope)) bad('scope', 'must be global, tenant:<id> or run:<tenant>/<run>');
  if (!(GUARD_STATES as readonly string[]).includes(c.state)) bad('state', `must be one of ${GUARD_STATES.join(', ')}`);
  if (!(GUARD_STATES as readonly string[]).includes(c.previous)) bad('previous', `must be one of ${GUARD_STATES.join(', ')}`);
  if (!Number.isSafeInteger(c.seq) || c.seq < 1) bad('seq', 'must be a whole number >= 1');
  if (!Number.isFinite(c.at)) bad('at', 'must be epoch milliseconds');
  if (typeof c.reason !== 'string') bad('reason', 'must be a string');
  if (!Array.isArray(c.holds)) bad('holds', 'must be an array');
}

/** Per-scope high-water mark of seqs; `accept` is true only for a change newer than any seen. */
export class SeqTracker {
  private readonly last = new Map<ScopeKey, number>();

  accept(change: StateChange): boolean {
    const prev = this.last.get(change.scope);
    if (prev !== undefined && change.seq <= prev) return false;
    this.last.set(change.scope, change.seq);
    return true;
  }

  lastSeq(scope: ScopeKey): number | undefined {
    return this.last.get(scope);
  }

  scopes(): ScopeKey[] {
    return [...this.last.keys()];
  }
}

/** Wraps a handler so it sees each scope's changes once and in order, and never throws out. */
export function orderedHandler(handler: HaltHandler, onError: ErrorHandler): { deliver(c: StateChange): void } {
  const seen = new SeqTracker();
  return {
    deliver(c) {
      if (!seen.accept(c)) return;
      try {
        handler(c);
      } catch (e) {
        onError(e, 'halt subscriber');
      }
    },
  };
}

export interface InProcessHaltBusOptions {
  onError?: ErrorHandler;
}

/** The embedded default: a map of durable states and a synchronous fan-out. */
export class InProcessHaltBus implements HaltBus {
  private readonly states = new Map<ScopeKey, StateChange>();
  private readonly subs = new Set<{ deliver(c: StateChange): void }>();
  private readonly onError: ErrorHandler;
  private closed = false;

  constructor(opts: InProcessHaltBusOptions = {}) {
    this.onError = opts.onError ?? defaultErrorHandler;
  }

  publish(change: StateChange): Promise<PublishOutcome> {
    try {
      this.assertOpen();
      validateStateChange(change);
    } catch (e) {
      return Promise.reject(e);
    }
    const prev = this.states.get(change.scope);
    if (prev && prev.seq >= change.seq) return Promise.resolve('stale');
    const copy = structuredClone(change);
    this.states.set(change.scope, copy);
    for (const s of [...this.subs]) s.deliver(structuredClone(copy));
    return Promise.resolve('published');
  }

  subscribe(handler: HaltHandler): () => void {
    this.assertOpen();
    const sub = orderedHandler(handler, this.onError);
    this.subs.add(sub);
    return () => {
      this.subs.delete(sub);
    };
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  current(scope: ScopeKey): Promise<StateChange | undefined> {
    if (this.closed) return Promise.reject(new GuardError('FORGE_ERR_HALT_BUS_CLOSED', 'current() after close()'));
    const c = this.states.get(scope);
    return Promise.resolve(c ? structuredClone(c) : undefined);
  }

  scopes(): Promise<ScopeKey[]> {
    return Promise.resolve([...this.states.keys()]);
  }

  close(): Promise<void> {
    this.closed = true;
    this.subs.clear();
    return Promise.resolve();
  }

  private assertOpen(): void {
    if (this.closed) throw new GuardError('FORGE_ERR_HALT_BUS_CLOSED', 'the bus is closed');
  }
}

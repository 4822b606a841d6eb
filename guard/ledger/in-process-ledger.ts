import type { Micros, ScopeKey } from '../../rules/index.ts';
import { LedgerError } from './errors.ts';
import type { ExpiredReservation, ExtendOutcome, LiveLedger, ReserveInput, ReserveOutcome, ScopeCaps, ScopeSnapshot } from './types.ts';
import { dayOf } from '../../rules/index.ts';
import { FifoMap } from '../fifo.ts';
import { WEEK_DAYS, checkExtend, checkId, checkReserve, checkSpend } from './validate.ts';

interface ScopeCounters {
  /** Spend per UTC day number. */
  days: Map<number, Micros>;
  run: Micros;
  reserved: Micros;
  open: number;
  /** The week's spend as last summed, for the day `weekOf` (-1: not summed since the days last changed). */
  weekOf: number;
  week: Micros;
}

interface Reservation {
  id: string;
  /** Shared by every reservation of the same scopes (see `names`): never changed in place. */
  scopes: readonly ScopeKey[];
  amountMicros: Micros;
  expiresAt: number;
  /** False once released (settled or expired): its entry in `expiring` is then skipped, and compacted away. */
  open: boolean;
}

/** The reservations that expire in one UTC second, in the order they were made; released ones are skipped. */
interface ExpiryBucket {
  list: Reservation[];
  /** How many of `list` are released: past half of it, they are filtered out. */
  released: number;
}

/** Scope lists kept at most (one per run in flight): past it the list is built again, which is only slower. */
const MAX_NAME_LISTS = 10_000;

export interface InProcessLedgerOptions {
  /** How long an eventId is remembered for idempotence, ms (default 8 days). */
  eventIdTtlMs?: number;
  /**
   * At most this many event ids are remembered (default 1,000,000): memory is bounded by configuration,
   * not by traffic. Past it the oldest is forgotten first (its settle and its event then could both count
   * in the caps' counters; the log and the guardrail still count it once).
   */
  maxEventIds?: number;
  /** Clock for eventId retention only (counters use the times passed in). */
  clock?: () => number;
}

/**
 * The embedded default: counters and reservations in memory. Every method runs to completion without
 * awaiting, so each is atomic with respect to the others in this process.
 */
export class InProcessLedger implements LiveLedger {
  private readonly scopes = new Map<ScopeKey, ScopeCounters>();
  private readonly reservations = new Map<string, Reservation>();
  /**
   * Open reservations by the UTC second they expire in: `expire` looks only at the seconds that passed. A
   * list per second, not a set: an admission appends (no hashing), a release only marks the reservation
   * and counts it, and a list more than half released is compacted, so it holds at most about twice the
   * open ones.
   */
  private readonly expiring = new Map<number, ExpiryBucket>();
  /** The scope names of recent reservations, by their last scope: reservations of one run share one list. */
  private readonly names = new Map<ScopeKey, readonly ScopeKey[]>();
  /** Event ids remembered, each until its forget-after time (clock ms), oldest first. */
  private readonly events = new FifoMap<string, true>();
  private readonly ttl: number;
  private readonly maxIds: number;
  private readonly clock: () => number;
  private closed = false;

  constructor(opts: InProcessLedgerOptions = {}) {
    this.ttl = opts.eventIdTtlMs ?? 8 * 86_400_000;
    this.maxIds = opts.maxEventIds ?? 1_000_000;
    this.clock = opts.clock ?? Date.now;
  }

  /**
   * Start-up: the spend counters as the event log has them (per scope, USD micros per UTC day and the run
   * total), so the caps hold across a restart. Replaces what is there.
   */
  seed(counters: ReadonlyMap<ScopeKey, { days: ReadonlyMap<number, Micros>; runMicros: Micros }>): void {
    for (const [scope, c] of counters) {
      const cur = this.counters(scope);
      cur.days = new Map(c.days);
      cur.weekOf = -1;
      cur.run = c.runMicros;
    }
  }

  private counters(scope: ScopeKey): ScopeCounters {
    let c = this.scopes.get(scope);
    if (!c) {
      c = { days: new Map(), run: 0, reserved: 0, open: 0, weekOf: -1, week: 0 };
      this.scopes.set(scope, c);
    }
    return c;
  }

  private week(c: ScopeCounters, today: number): Micros {
    if (c.weekOf === today) return c.week;
    let sum = 0;
    for (let d = today - WEEK_DAYS + 1; d <= today; d++) sum += c.days.get(d) ?? 0;
    c.weekOf = today;
    c.week = sum;
    return sum;
  }

  /** The scope names of a reserve's list, as one shared array (reservations of one run name the same). */
  private namesOf(scopes: ReserveInput['scopes']): readonly ScopeKey[] {
    const last = scopes[scopes.length - 1]!.scope;
    const known = this.names.get(last);
    if (known && known.length === scopes.length) {
      let same = true;
      for (let i = 0; i < known.length; i++) if (known[i] !== scopes[i]!.scope) same = false;
      if (same) return known;
    }
    const list: ScopeKey[] = [];
    for (const { scope } of scopes) list.push(scope);
    if (this.names.size >= MAX_NAME_LISTS) this.names.clear();
    this.names.set(last, list);
    return list;
  }

  /** The first scope and cap with no headroom left (used + reserved >= cap), if any. */
  private refusal(scopes: ReadonlyArray<{ scope: ScopeKey; caps: ScopeCaps }>, now: number): Extract<ReserveOutcome, { ok: false }> | undefined {
    const today = dayOf(now);
    for (const { scope, caps } of scopes) {
      const c = this.scopes.get(scope);
      const reserved = c?.reserved ?? 0;
      // Day, then week, then run: the first without headroom is the one named.
      const day = c?.days.get(today) ?? 0;
      if (day + reserved >= caps.dayHard) return { ok: false, scope, cap: 'day', usedMicros: day, reservedMicros: reserved, capMicros: caps.dayHard };
      const week = c ? this.week(c, today) : 0;
      if (week + reserved >= caps.weekHard) return { ok: false, scope, cap: 'week', usedMicros: week, reservedMicros: reserved, capMicros: caps.weekHard };
      const run = c?.run ?? 0;
      if (run + reserved >= caps.runCap) return { ok: false, scope, cap: 'run', usedMicros: run, reservedMicros: reserved, capMicros: caps.runCap };
    }
    return undefined;
  }

  async reserve(input: ReserveInput): Promise<ReserveOutcome> {
    return this.reserveNow(input);
  }

  reserveNow(input: ReserveInput): ReserveOutcome {
    this.assertOpen();
    checkReserve(input);
    const existing = this.reservations.get(input.reservationId);
    if (existing) return { ok: true, reservationId: input.reservationId, expiresAt: existing.expiresAt };
    const refused = this.refusal(input.scopes, input.now);
    if (refused) return refused;
    const expiresAt = input.now + input.ttlMs;
    for (const { scope } of input.scopes) {
      const c = this.counters(scope);
      c.reserved += input.amountMicros;
      c.open += 1;
    }
    const r: Reservation = { id: input.reservationId, scopes: this.namesOf(input.scopes), amountMicros: input.amountMicros, expiresAt, open: true };
    this.reservations.set(r.id, r);
    const second = Math.floor(expiresAt / 1000);
    let bucket = this.expiring.get(second);
    if (!bucket) {
      bucket = { list: [], released: 0 };
      this.expiring.set(second, bucket);
    }
    bucket.list.push(r);
    return { ok: true, reservationId: r.id, expiresAt };
  }

  private release(r: Reservation): void {
    for (const scope of r.scopes) {
      const c = this.counters(scope);
      c.reserved -= r.amountMicros;
      c.open -= 1;
    }
    this.reservations.delete(r.id);
    r.open = false;
    const second = Math.floor(r.expiresAt / 1000);
    const bucket = this.expiring.get(second);
    if (!bucket) return;
    bucket.released++;
    if (bucket.released === bucket.list.length) this.expiring.delete(second);
    else if (bucket.released > 64 && bucket.released * 2 > bucket.list.length) {
      bucket.list = bucket.list.filter((x) => x.open);
      bucket.released = 0;
    }
  }

  private addSpend(eventId: string, scopes: readonly ScopeKey[], amountMicros: Micros, eventTime: number): boolean {
    const now = this.clock();
    this.events.evict(now, this.maxIds);
    if (this.events.has(eventId)) return false;
    this.events.evict(now, this.maxIds - 1);
    this.events.set(eventId, true, now + this.ttl);
    const day = dayOf(eventTime);
    for (const scope of scopes) {
      const c = this.counters(scope);
      c.days.set(day, (c.days.get(day) ?? 0) + amountMicros);
      c.weekOf = -1;
      c.run += amountMicros;
    }
    return true;
  }

  async settle(
    reservationId: string,
    actual: { eventId: string; amountMicros: Micros; eventTime: number; scopes: readonly ScopeKey[] },
  ): Promise<'settled' | 'unknown'> {
    return (await this.settleDetailed(reservationId, actual)).status;
  }

  async settleDetailed(
    reservationId: string,
    actual: { eventId: string; amountMicros: Micros; eventTime: number; scopes: readonly ScopeKey[] },
  ): Promise<{ status: 'settled' | 'unknown'; reservedMicros: Micros }> {
    this.assertOpen();
    checkId(reservationId, 'reservationId');
    checkSpend(actual.eventId, actual.scopes, actual.amountMicros, actual.eventTime);
    const r = this.reservations.get(reservationId);
    if (r) this.release(r);
    this.addSpend(actual.eventId, actual.scopes, actual.amountMicros, actual.eventTime);
    return r ? { status: 'settled', reservedMicros: r.amountMicros } : { status: 'unknown', reservedMicros: 0 };
  }

  async extend(input: { reservationId: string; scopes: ReadonlyArray<{ scope: ScopeKey; caps: ScopeCaps }>; amountMicros: Micros; now: number }): Promise<ExtendOutcome> {
    this.assertOpen();
    checkExtend(input);
    const r = this.reservations.get(input.reservationId);
    if (!r) return { ok: false, unknown: true };
    const refused = this.refusal(input.scopes, input.now);
    if (refused) return refused;
    for (const scope of r.scopes) this.counters(scope).reserved += input.amountMicros;
    r.amountMicros += input.amountMicros;
    return { ok: true, reservedMicros: r.amountMicros, expiresAt: r.expiresAt };
  }

  async record(eventId: string, scopes: readonly ScopeKey[], amountMicros: Micros, eventTime: number): Promise<boolean> {
    this.assertOpen();
    checkSpend(eventId, scopes, amountMicros, eventTime);
    return this.addSpend(eventId, scopes, amountMicros, eventTime);
  }

  async expire(now: number): Promise<ExpiredReservation[]> {
    this.assertOpen();
    const out: ExpiredReservation[] = [];
    // Only the seconds that have begun (a few dozen buckets for a TTL of a minute), not every open reservation.
    const due: Reservation[] = [];
    for (const [second, bucket] of this.expiring) {
      if (second * 1000 > now) continue;
      for (const r of bucket.list) if (r.open && r.expiresAt <= now) due.push(r);
    }
    for (const r of due) {
      this.release(r);
      out.push({ reservationId: r.id, scopes: [...r.scopes], amountMicros: r.amountMicros, expiresAt: r.expiresAt });
    }
    return out.sort((a, b) => a.expiresAt - b.expiresAt);
  }

  async snapshot(scope: ScopeKey, now: number): Promise<ScopeSnapshot> {
    this.assertOpen();
    const c = this.scopes.get(scope);
    if (!c) return { dayMicros: 0, weekMicros: 0, runMicros: 0, reservedMicros: 0, openReservations: 0 };
    const today = dayOf(now);
    return { dayMicros: c.days.get(today) ?? 0, weekMicros: this.week(c, today), runMicros: c.run, reservedMicros: c.reserved, openReservations: c.open };
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private assertOpen(): void {
    if (this.closed) throw new LedgerError('FORGE_ERR_LEDGER_CLOSED', 'the ledger is closed');
  }
}

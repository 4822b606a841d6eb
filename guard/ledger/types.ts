import type { Micros, ScopeKey } from '../../rules/index.ts';

/**
 * The live ledger: spend counters and reservations that admissions check atomically.
 * Two implementations (in-process for the embedded default, Redis + Lua for several API processes),
 * one contract suite (test/ledger-contract.test.ts).
 *
 * Counters per scope: spend per UTC day (of the event time), cumulative "run" spend, and the sum of open
 * reservations. Week = the 7 UTC days ending on the day of `now`, today included.
 * An event id counts once: `settle` and `record` with the same eventId add its spend once in total.
 */
export interface ScopeCaps {
  /** B_day_hard, USD micros. */
  dayHard: Micros;
  /** B_week_hard, USD micros. */
  weekHard: Micros;
  /** B_run_cap, USD micros. */
  runCap: Micros;
}

export interface ReserveInput {
  /** Chosen by the caller (unique). */
  reservationId: string;
  /** Every scope the task touches, each with its hard caps. */
  scopes: ReadonlyArray<{ scope: ScopeKey; caps: ScopeCaps }>;
  /** Estimated cost, USD micros (> 0). */
  amountMicros: Micros;
  /** Epoch ms. */
  now: number;
  /** The reservation is released if not settled within ttlMs. */
  ttlMs: number;
}

/**
 * Admission rule (atomic over all scopes): allow when, for every scope and every cap,
 * used + reserved < cap, where used is that cap's spend (day / week / run). Then reserve amountMicros in
 * every scope. So admitted spend past a cap is at most one reservation's amount.
 */
export type ReserveOutcome =
  | { ok: true; reservationId: string; expiresAt: number }
  | { ok: false; scope: ScopeKey; cap: 'day' | 'week' | 'run'; usedMicros: Micros; reservedMicros: Micros; capMicros: Micros };

export type ExtendOutcome =
  | { ok: true; reservedMicros: Micros; expiresAt: number }
  | { ok: false; unknown: true }
  | (Extract<ReserveOutcome, { ok: false }> & { unknown?: false });

export interface ScopeSnapshot {
  dayMicros: Micros;
  weekMicros: Micros;
  runMicros: Micros;
  reservedMicros: Micros;
  openReservations: number;
}

export interface ExpiredReservation {
  reservationId: string;
  scopes: ScopeKey[];
  amountMicros: Micros;
  expiresAt: number;
}

export interface LiveLedger {
  reserve(input: ReserveInput): Promise<ReserveOutcome>;
  /** As reserve, answered at once, without a promise: a ledger in this process (admissions' hot path). */
  reserveNow?(input: ReserveInput): ReserveOutcome;
  /**
   * Releases the reservation and records the actual spend (at eventTime) once per eventId.
   * Returns 'settled', 'unknown' (no such open reservation: expired or settled before; the spend is
   * still recorded once by eventId) .
   */
  settle(reservationId: string, actual: { eventId: string; amountMicros: Micros; eventTime: number; scopes: readonly ScopeKey[] }): Promise<'settled' | 'unknown'>;
  /** As settle, and says how much the reservation held (0 when unknown): a settle above it is an overrun. */
  settleDetailed(reservationId: string, actual: { eventId: string; amountMicros: Micros; eventTime: number; scopes: readonly ScopeKey[] }): Promise<{ status: 'settled' | 'unknown'; reservedMicros: Micros }>;
  /**
   * A top-up: adds amountMicros to an open reservation under the same rule as reserve (allowed while, for
   * every scope and cap, used + reserved < cap). 'unknown' when the reservation is not open.
   */
  extend(input: { reservationId: string; scopes: ReadonlyArray<{ scope: ScopeKey; caps: ScopeCaps }>; amountMicros: Micros; now: number }): Promise<ExtendOutcome>;
  /** Records spend that arrived without a reservation (e.g. ingested events); once per eventId. Returns false for a duplicate. */
  record(eventId: string, scopes: readonly ScopeKey[], amountMicros: Micros, eventTime: number): Promise<boolean>;
  /** Releases every reservation whose expiry is <= now and returns them (each once, across processes). */
  expire(now: number): Promise<ExpiredReservation[]>;
  snapshot(scope: ScopeKey, now: number): Promise<ScopeSnapshot>;
  close(): Promise<void>;
}

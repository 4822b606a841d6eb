import { parseScope, type ScopeKey } from '../../rules/index.ts';
import { LedgerError } from './errors.ts';
import type { ReserveInput } from './types.ts';

/** Days of the rolling week: the 7 UTC days ending on the day of `now`, today included. */
export const WEEK_DAYS = 7;


function bad(field: string, msg: string): never {
  throw new LedgerError('FORGE_ERR_LEDGER_INPUT', `${field} ${msg}`, { field });
}

function micros(v: unknown, field: string, min: number): void {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) bad(field, `must be a whole number of USD micros >= ${min}`);
}

function epochMs(v: unknown, field: string): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) bad(field, 'must be epoch milliseconds');
}

export function checkId(v: unknown, field: string): void {
  if (typeof v !== 'string' || v.length === 0 || v.length > 200 || /[\s]/.test(v)) bad(field, 'must be 1-200 characters without spaces');
}

/** Scope keys already found well-formed (admissions name the same few again and again); bounded. */
const wellFormed = new Set<string>();

function isScope(s: unknown): s is ScopeKey {
  if (typeof s !== 'string') return false;
  if (wellFormed.has(s)) return true;
  if (!parseScope(s)) return false;
  if (wellFormed.size >= 10_000) wellFormed.clear();
  wellFormed.add(s);
  return true;
}

/** Each scope well-formed and named once. */
function checkScopeList(list: readonly unknown[], field: string, scopeOf: (x: unknown) => unknown, suffix: string): void {
  for (let i = 0; i < list.length; i++) {
    const s = scopeOf(list[i]);
    if (!isScope(s)) bad(`${field}[${i}]${suffix}`, 'must be global, tenant:<id> or run:<tenant>/<run>');
    for (let j = 0; j < i; j++) if (scopeOf(list[j]) === s) bad(`${field}[${i}]${suffix}`, `repeats scope ${s}`);
  }
}

export function checkScopes(scopes: unknown, field: string): asserts scopes is readonly ScopeKey[] {
  if (!Array.isArray(scopes) || scopes.length === 0) bad(field, 'must list at least one scope');
  checkScopeList(scopes as unknown[], field, (x) => x, '');
}

/**
 * Scope lists (with their caps) found well-formed, while they live: only lists frozen all the way down,
 * which cannot change after the check (the guardrail names the same frozen list for every admission of a
 * run while its caps are the same).
 */
const checkedLists = new WeakSet<object>();

const scopeOfItem = (x: unknown): unknown => (x as { scope?: unknown } | undefined)?.scope;

function frozenList(list: ReserveInput['scopes']): boolean {
  if (!Object.isFrozen(list)) return false;
  for (const x of list) if (!Object.isFrozen(x) || !Object.isFrozen(x.caps)) return false;
  return true;
}

export function checkReserve(i: ReserveInput): void {
  checkId(i.reservationId, 'reservationId');
  if (!checkedLists.has(i.scopes)) {
    if (!Array.isArray(i.scopes) || i.scopes.length === 0) bad('scopes', 'must list at least one scope');
    checkScopeList(i.scopes, 'scopes', scopeOfItem, '.scope');
    for (let n = 0; n < i.scopes.length; n++) {
      const caps = i.scopes[n]!.caps;
      micros(caps?.dayHard, `scopes[${n}].caps.dayHard`, 0);
      micros(caps?.weekHard, `scopes[${n}].caps.weekHard`, 0);
      micros(caps?.runCap, `scopes[${n}].caps.runCap`, 0);
    }
    if (frozenList(i.scopes)) checkedLists.add(i.scopes);
  }
  micros(i.amountMicros, 'amountMicros', 1);
  epochMs(i.now, 'now');
  if (!Number.isSafeInteger(i.ttlMs) || i.ttlMs < 1) bad('ttlMs', 'must be a whole number of milliseconds >= 1');
}

/** A top-up of an open reservation: its id and an amount of at least one micro-dollar. */
export function checkExtend(i: { reservationId: unknown; amountMicros: unknown }): void {
  checkId(i.reservationId, 'reservationId');
  micros(i.amountMicros, 'amountMicros', 1);
}

export function checkSpend(eventId: unknown, scopes: unknown, amountMicros: unknown, eventTime: unknown): void {
  checkId(eventId, 'eventId');
  checkScopes(scopes, 'scopes');
  micros(amountMicros, 'amountMicros', 0);
  epochMs(eventTime, 'eventTime');
}

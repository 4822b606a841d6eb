import type { GuardState } from '../../rules/index.ts';
import { BillingError } from '../errors.ts';
import { monthKey } from '../limits.ts';
import type { BillingCatalog, ModelTier } from '../plans.ts';
import { KeyedSerial } from '../serial.ts';
import {
  ACCOUNTS,
  freeRunsAccount,
  type CreditEntryStore,
  type CreditUnit,
  type LedgerEntry,
  type TxKind,
} from './entries.ts';

/** Credits a job costs: per model call by tier, plus per sandbox try (config/plans.yaml `credits`). */
export function creditsFor(
  catalog: BillingCatalog,
  usage: { modelCalls?: Partial<Record<ModelTier, number>>; sandboxTries?: number },
): number {
  let c = 0;
  for (const [tier, n] of Object.entries(usage.modelCalls ?? {}) as [ModelTier, number][]) {
    c += catalog.credits.perModelTier[tier] * n;
  }
  return c + catalog.credits.perSandboxTry * (usage.sandboxTries ?? 0);
}

/** Decides whether a new hold may be taken for an owner (and run); the halt seam plugs in here. */
export type HoldGuard = (req: { owner: string; runId?: string }) => { ok: true } | { ok: false; scope: string; state: GuardState };

export interface HoldRequest {
  /** The paying owner: a team (tenant) id. */
  owner: string;
  /** Chosen by the caller, unique per job; a repeated hold with the same id is answered from the first. */
  holdId: string;
  /** Estimated credits of the job (integer > 0). */
  credits: number;
  /** Free runs per month on the owner's plan; a hold uses one of this month's free runs before credits. */
  freeMonthlyRuns?: number;
  runId?: string;
  /** Epoch ms. */
  now: number;
  memo?: string;
}

export type HoldOutcome =
  | { ok: true; holdId: string; unit: CreditUnit; amount: number; available: number; replay: boolean }
  | { ok: false; reason: 'insufficient_credits'; available: number; needed: number }
  | { ok: false; reason: 'halted'; scope: string; state: GuardState };

export type SettleOutcome =
  | { ok: true; holdId: string; unit: CreditUnit; held: number; charged: number; refunded: number; shortfall: number; available: number }
  | { ok: false; reason: 'unknown_hold' | 'already_closed'; holdId: string };

export interface Balance {
  owner: string;
  available: number;
  held: number;
  openHolds: number;
  /** Free runs left in the month of `now`. */
  freeRunsLeft: number;
}

/** What every credit ledger implementation offers (in-process over a store; Redis + Lua for several processes). */
export interface CreditLedgerApi {
  purchase(owner: string, purchaseId: string, credits: number, now: number, memo?: string): Promise<{ available: number; replay: boolean }>;
  grant(owner: string, grantId: string, credits: number, now: number, memo?: string): Promise<{ available: number; replay: boolean }>;
  hold(req: HoldRequest): Promise<HoldOutcome>;
  settle(owner: string, holdId: string, actualCredits: number, now: number): Promise<SettleOutcome>;
  release(owner: string, holdId: string, now: number): Promise<SettleOutcome>;
  balance(owner: string, now: number): Promise<Balance>;
  /** An open hold (taken, not yet settled or released), wherever it was taken; undefined when none. */
  openHold(owner: string, holdId: string): Promise<{ unit: CreditUnit; amount: number; at: number } | undefined>;
}

interface OpenHold {
  unit: CreditUnit;
  amount: number;
  at: number;
  /** For a free-run hold: the month account it came from. */
  fromAccount: string;
}

interface OwnerState {
  balances: Map<string, number>;
  open: Map<string, OpenHold>;
  closed: Set<string>;
  txIds: Set<string>;
}

const ID_RE = /^[A-Za-z0-9._:@/-]{1,128}$/;

function key(unit: CreditUnit, account: string): string {
  return `${unit}|${account}`;
}

/**
 * The prepaid credit ledger. Each owner's decisions run in a per-owner serial section against a balance
 * rebuilt from the store on first touch, and state changes only after the store accepted the entries; so
 * within one process the balance never goes negative however many holds race. Several processes need the
 * Redis implementation (or one ledger process).
 */
export class CreditLedger implements CreditLedgerApi {
  private readonly serial = new KeyedSerial();
  private readonly owners = new Map<string, OwnerState>();

  constructor(
    private readonly store: CreditEntryStore,
    private readonly opts: { guard?: HoldGuard } = {},
  ) {}

  /** Adds a bought credit pack. Idempotent by purchaseId (e.g. the Stripe payment id). */
  async purchase(owner: string, purchaseId: string, credits: number, now: number, memo = ''): Promise<{ available: number; replay: boolean }> {
    return this.credit(owner, 'purchase', purchaseId, credits, ACCOUNTS.sales, now, memo);
  }

  /** Gives credits for free (promotion, goodwill). Idempotent by grantId. */
  async grant(owner: string, grantId: string, credits: number, now: number, memo = ''): Promise<{ available: number; replay: boolean }> {
    return this.credit(owner, 'grant', grantId, credits, ACCOUNTS.grants, now, memo);
  }

  private async credit(owner: string, kind: TxKind, ref: string, credits: number, from: string, now: number, memo: string) {
    checkCredit(owner, kind, ref, credits);
    return this.serial.run(owner, async () => {
      const s = await this.state(owner);
      const txId = `${kind}:${ref}`;
      if (s.txIds.has(txId)) return { available: bal(s, 'credit', ACCOUNTS.available), replay: true };
      await this.commit(owner, s, txId, kind, ref, now, memo, [
        ['credit', from, -credits],
        ['credit', ACCOUNTS.available, credits],
      ]);
      return { available: bal(s, 'credit', ACCOUNTS.available), replay: false };
    });
  }

  /** Holds credits (or one free run) at job start. Refused for a halted scope or short of credits. */
  async hold(req: HoldRequest): Promise<HoldOutcome> {
    checkHold(req);
    return this.serial.run(req.owner, async () => {
      const s = await this.state(req.owner);
      const existing = s.open.get(req.holdId);
      if (existing) {
        return { ok: true, holdId: req.holdId, unit: existing.unit, amount: existing.amount, available: bal(s, 'credit', ACCOUNTS.available), replay: true };
      }
      if (s.closed.has(req.holdId)) {
        throw new BillingError('FORGE_ERR_BILLING_INPUT', `hold "${req.holdId}" was already settled or released`, { field: 'holdId' });
      }
      // Checked inside the section so a halt published before this point is always obeyed.
      const g = this.opts.guard?.({ owner: req.owner, ...(req.runId !== undefined ? { runId: req.runId } : {}) });
      if (g && !g.ok) return { ok: false, reason: 'halted', scope: g.scope, state: g.state };

      const month = monthKey(req.now);
      const freeAcct = freeRunsAccount(month);
      const monthly = req.freeMonthlyRuns ?? 0;
      if (monthly > 0) {
        const grantTx = `free_runs_grant:${req.owner}:${month}`;
        if (!s.txIds.has(grantTx)) {
          await this.commit(req.owner, s, grantTx, 'free_runs_grant', month, req.now, `${monthly} free runs`, [
            ['run', ACCOUNTS.freeRunsIssued, -monthly],
            ['run', freeAcct, monthly],
          ]);
        }
      }
      const memo = req.memo ?? '';
      if (bal(s, 'run', freeAcct) >= 1) {
        await this.commit(req.owner, s, `hold:${req.holdId}`, 'hold', req.holdId, req.now, memo, [
          ['run', freeAcct, -1],
          ['run', ACCOUNTS.freeRunsHeld, 1],
        ]);
        s.open.set(req.holdId, { unit: 'run', amount: 1, at: req.now, fromAccount: freeAcct });
        return { ok: true, holdId: req.holdId, unit: 'run', amount: 1, available: bal(s, 'credit', ACCOUNTS.available), replay: false };
      }
      const available = bal(s, 'credit', ACCOUNTS.available);
      if (available < req.credits) return { ok: false, reason: 'insufficient_credits', available, needed: req.credits };
      await this.commit(req.owner, s, `hold:${req.holdId}`, 'hold', req.holdId, req.now, memo, [
        ['credit', ACCOUNTS.available, -req.credits],
        ['credit', ACCOUNTS.held, req.credits],
      ]);
      s.open.set(req.holdId, { unit: 'credit', amount: req.credits, at: req.now, fromAccount: ACCOUNTS.available });
      return { ok: true, holdId: req.holdId, unit: 'credit', amount: req.credits, available: bal(s, 'credit', ACCOUNTS.available), replay: false };
    });
  }

  /**
   * Deducts the job's actual credits from its hold and refunds the rest. When the actual exceeds the hold,
   * the excess is taken from the available balance as far as it goes (never below zero); the remainder is
   * reported as `shortfall`. A free-run hold is consumed whole.
   */
  async settle(owner: string, holdId: string, actualCredits: number, now: number): Promise<SettleOutcome> {
    checkSettle(owner, holdId, actualCredits);
    return this.serial.run(owner, async () => {
      const s = await this.state(owner);
      const h = s.open.get(holdId);
      if (!h) return { ok: false, reason: s.closed.has(holdId) ? 'already_closed' : 'unknown_hold', holdId };
      if (h.unit === 'run') {
        await this.commit(owner, s, `settle:${holdId}`, 'settle', holdId, now, `actual ${actualCredits} credits covered by a free run`, [
          ['run', ACCOUNTS.freeRunsHeld, -1],
          ['run', ACCOUNTS.freeRunsUsed, 1],
        ]);
        this.close(s, holdId);
        return { ok: true, holdId, unit: 'run', held: 1, charged: 1, refunded: 0, shortfall: 0, available: bal(s, 'credit', ACCOUNTS.available) };
      }
      const available = bal(s, 'credit', ACCOUNTS.available);
      const charged = Math.min(actualCredits, h.amount + available);
      const refunded = h.amount - charged; // negative when the excess comes from `available`
      const lines: [CreditUnit, string, number][] = [
        ['credit', ACCOUNTS.held, -h.amount],
        ['credit', ACCOUNTS.consumed, charged],
      ];
      if (refunded !== 0) lines.push(['credit', ACCOUNTS.available, refunded]);
      await this.commit(owner, s, `settle:${holdId}`, 'settle', holdId, now, `actual ${actualCredits}`, lines);
      this.close(s, holdId);
      return {
        ok: true,
        holdId,
        unit: 'credit',
        held: h.amount,
        charged,
        refunded: Math.max(0, refunded),
        shortfall: actualCredits - charged,
        available: bal(s, 'credit', ACCOUNTS.available),
      };
    });
  }

  /** Returns an unused hold whole (job cancelled, never started, or halted before it ran). */
  async release(owner: string, holdId: string, now: number): Promise<SettleOutcome> {
    checkId('owner', owner);
    checkId('holdId', holdId);
    return this.serial.run(owner, async () => {
      const s = await this.state(owner);
      const h = s.open.get(holdId);
      if (!h) return { ok: false, reason: s.closed.has(holdId) ? 'already_closed' : 'unknown_hold', holdId };
      const lines: [CreditUnit, string, number][] =
        h.unit === 'run'
          ? [
              ['run', ACCOUNTS.freeRunsHeld, -1],
              ['run', h.fromAccount, 1],
            ]
          : [
              ['credit', ACCOUNTS.held, -h.amount],
              ['credit', ACCOUNTS.available, h.amount],
            ];
      await this.commit(owner, s, `release:${holdId}`, 'release', holdId, now, 'refund of unused hold', lines);
      this.close(s, holdId);
      return { ok: true, holdId, unit: h.unit, held: h.amount, charged: 0, refunded: h.amount, shortfall: 0, available: bal(s, 'credit', ACCOUNTS.available) };
    });
  }

  async openHold(owner: string, holdId: string): Promise<{ unit: CreditUnit; amount: number; at: number } | undefined> {
    checkId('owner', owner);
    checkId('holdId', holdId);
    return this.serial.run(owner, async () => {
      const h = (await this.state(owner)).open.get(holdId);
      return h ? { unit: h.unit, amount: h.amount, at: h.at } : undefined;
    });
  }

  async balance(owner: string, now: number): Promise<Balance> {
    checkId('owner', owner);
    return this.serial.run(owner, async () => {
      const s = await this.state(owner);
      return {
        owner,
        available: bal(s, 'credit', ACCOUNTS.available),
        held: bal(s, 'credit', ACCOUNTS.held),
        openHolds: s.open.size,
        freeRunsLeft: bal(s, 'run', freeRunsAccount(monthKey(now))),
      };
    });
  }

  private close(s: OwnerState, holdId: string): void {
    s.open.delete(holdId);
    s.closed.add(holdId);
  }

  private async commit(
    owner: string,
    s: OwnerState,
    txId: string,
    kind: TxKind,
    ref: string,
    at: number,
    memo: string,
    lines: [CreditUnit, string, number][],
  ): Promise<void> {
    const entries: LedgerEntry[] = lines.map(([unit, account, amount], seq) => ({ txId, seq, owner, account, unit, amount, kind, ref, at, memo }));
    assertBalanced(entries);
    // Never let a balance the owner spends from go negative, whatever the caller computed.
    for (const e of entries) {
      if (!e.account.startsWith('platform:') && bal(s, e.unit, e.account) + e.amount < 0) {
        throw new BillingError('FORGE_ERR_BILLING_LEDGER', `transaction ${txId} would make ${e.account} negative`);
      }
    }
    try {
      await this.store.append(entries);
    } catch (err) {
      // The cached state is unchanged, so it still equals the store's.
      throw err instanceof BillingError ? err : new BillingError('FORGE_ERR_STORE_UNAVAILABLE', `appending ${txId}`, { cause: err });
    }
    apply(s, entries);
  }

  private async state(owner: string): Promise<OwnerState> {
    const cached = this.owners.get(owner);
    if (cached) return cached;
    let entries: LedgerEntry[];
    try {
      entries = await this.store.load(owner);
    } catch (err) {
      throw new BillingError('FORGE_ERR_STORE_UNAVAILABLE', `loading ledger of ${owner}`, { cause: err });
    }
    const s: OwnerState = { balances: new Map(), open: new Map(), closed: new Set(), txIds: new Set() };
    apply(s, entries);
    this.owners.set(owner, s);
    return s;
  }
}

/** Folds entries into the state; order-independent, so a store may return them in any order. */
function apply(s: OwnerState, entries: readonly LedgerEntry[]): void {
  const debited = new Map<string, string>();
  for (const e of entries) {
    const k = key(e.unit, e.account);
    s.balances.set(k, (s.balances.get(k) ?? 0) + e.amount);
    s.txIds.add(e.txId);
    if (e.kind === 'hold' && e.amount < 0) debited.set(e.txId, e.account);
    if (e.kind === 'settle' || e.kind === 'release') {
      s.open.delete(e.ref);
      s.closed.add(e.ref);
    }
  }
  for (const e of entries) {
    if (e.kind === 'hold' && e.amount > 0 && !s.closed.has(e.ref)) {
      s.open.set(e.ref, { unit: e.unit, amount: e.amount, at: e.at, fromAccount: debited.get(e.txId) ?? ACCOUNTS.available });
    }
  }
}

function bal(s: OwnerState, unit: CreditUnit, account: string): number {
  return s.balances.get(key(unit, account)) ?? 0;
}

/** Every transaction sums to zero per unit. */
export function assertBalanced(entries: readonly LedgerEntry[]): void {
  const sums = new Map<string, number>();
  for (const e of entries) {
    if (!Number.isSafeInteger(e.amount)) throw new BillingError('FORGE_ERR_BILLING_LEDGER_UNBALANCED', `${e.txId}: non-integer amount`);
    const k = `${e.txId}|${e.unit}`;
    sums.set(k, (sums.get(k) ?? 0) + e.amount);
  }
  for (const [k, v] of sums) if (v !== 0) throw new BillingError('FORGE_ERR_BILLING_LEDGER_UNBALANCED', `${k} sums to ${v}`);
}

export function checkId(field: string, v: string): void {
  if (typeof v !== 'string' || !ID_RE.test(v)) {
    throw new BillingError('FORGE_ERR_BILLING_INPUT', `${field} must match ${ID_RE.source}`, { field });
  }
}

/** What every credit ledger checks before a purchase or grant. */
export function checkCredit(owner: string, kind: TxKind, ref: string, credits: number): void {
  checkId('owner', owner);
  checkId(kind === 'purchase' ? 'purchaseId' : 'grantId', ref);
  checkPositiveInt('credits', credits);
}

/** What every credit ledger checks before a hold; returns the free monthly runs (0 when not given). */
export function checkHold(req: HoldRequest): number {
  checkId('owner', req.owner);
  checkId('holdId', req.holdId);
  checkPositiveInt('credits', req.credits);
  const monthly = req.freeMonthlyRuns ?? 0;
  if (!(Number.isSafeInteger(monthly) && monthly >= 0)) throw new BillingError('FORGE_ERR_BILLING_INPUT', 'freeMonthlyRuns must be an integer >= 0', { field: 'freeMonthlyRuns' });
  return monthly;
}

/** What every credit ledger checks before a settle. */
export function checkSettle(owner: string, holdId: string, actualCredits: number): void {
  checkId('owner', owner);
  checkId('holdId', holdId);
  if (!(Number.isSafeInteger(actualCredits) && actualCredits >= 0)) {
    throw new BillingError('FORGE_ERR_BILLING_INPUT', 'actualCredits must be an integer >= 0', { field: 'actualCredits' });
  }
}

export function checkPositiveInt(field: string, v: number): void {
  if (!(Number.isSafeInteger(v) && v > 0)) throw new BillingError('FORGE_ERR_BILLING_INPUT', `${field} must be an integer > 0`, { field });
}

/** An owner's ledger entries in [from, to), at most `limit`, and whether every transaction of all of them balances. */
export function creditStatement(all: readonly LedgerEntry[], range: { from: number; to: number; limit: number }): { balanced: boolean; entries: LedgerEntry[]; truncated: boolean } {
  if (range.from >= range.to) throw new BillingError('FORGE_ERR_BILLING_INPUT', 'from must be before to', { field: 'from' });
  let balanced = true;
  try {
    assertBalanced(all);
  } catch {
    balanced = false;
  }
  const inRange = all.filter((e) => e.at >= range.from && e.at < range.to);
  return { balanced, entries: inRange.slice(0, range.limit), truncated: inRange.length > range.limit };
}

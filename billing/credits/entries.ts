/**
 * The credit ledger's rows: double-entry and append-only. A transaction is a set of entries (same txId)
 * whose amounts sum to zero per unit; an account's balance is the sum of its entries. Nothing is updated
 * or deleted: a refund or a correction is a new transaction.
 */
export type CreditUnit = 'credit' | 'run';

export type TxKind = 'purchase' | 'grant' | 'free_runs_grant' | 'hold' | 'settle' | 'release';

/**
 * Accounts, all scoped to one owner (a team / tenant id), so every transaction touches one owner only:
 * - `available`, `held` (credits): the owner's spendable credits and credits held for open jobs;
 * - `free_runs:<YYYY-MM>`, `free_runs_held` (runs): free monthly runs;
 * - `platform:*`: the platform's side of each movement (sales, grants, consumed, free runs issued / used).
 */
export const ACCOUNTS = {
  available: 'available',
  held: 'held',
  freeRunsHeld: 'free_runs_held',
  sales: 'platform:sales',
  grants: 'platform:grants',
  consumed: 'platform:consumed',
  freeRunsIssued: 'platform:free_runs_issued',
  freeRunsUsed: 'platform:free_runs_used',
} as const;

export function freeRunsAccount(month: string): string {
  return `free_runs:${month}`;
}

export interface LedgerEntry {
  txId: string;
  /** Position within the transaction. */
  seq: number;
  owner: string;
  account: string;
  unit: CreditUnit;
  /** Signed integer (credits or runs). */
  amount: number;
  kind: TxKind;
  /** The hold id, purchase id or grant id the transaction is about. */
  ref: string;
  /** Epoch ms. */
  at: number;
  /** Free text for auditors (pack id, model tier...). No secrets. */
  memo: string;
}

/** Where entries are kept. One transaction is appended as one call and must land all or nothing. */
export interface CreditEntryStore {
  append(entries: readonly LedgerEntry[]): Promise<void>;
  /** Every entry of one owner, in append order. */
  load(owner: string): Promise<LedgerEntry[]>;
  /** Sum of all amounts per unit across all owners (0 for a sound ledger). */
  totals(): Promise<Record<CreditUnit, number>>;
  close(): Promise<void>;
}

/** In-memory store: tests and the embedded default when no ClickHouse is configured. */
export class MemoryCreditEntryStore implements CreditEntryStore {
  private readonly byOwner = new Map<string, LedgerEntry[]>();
  /** Set to make the next append fail (tests of failure handling). */
  failNextAppend: Error | null = null;

  async append(entries: readonly LedgerEntry[]): Promise<void> {
    if (this.failNextAppend) {
      const e = this.failNextAppend;
      this.failNextAppend = null;
      throw e;
    }
    for (const e of entries) {
      const list = this.byOwner.get(e.owner) ?? [];
      list.push({ ...e });
      this.byOwner.set(e.owner, list);
    }
  }

  async load(owner: string): Promise<LedgerEntry[]> {
    return (this.byOwner.get(owner) ?? []).map((e) => ({ ...e }));
  }

  async totals(): Promise<Record<CreditUnit, number>> {
    const t: Record<CreditUnit, number> = { credit: 0, run: 0 };
    for (const list of this.byOwner.values()) for (const e of list) t[e.unit] += e.amount;
    return t;
  }

  all(): LedgerEntry[] {
    return [...this.byOwner.values()].flat().map((e) => ({ ...e }));
  }

  async close(): Promise<void> {}
}

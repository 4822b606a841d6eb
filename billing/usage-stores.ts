import type { Micros } from '../rules/index.ts';
import { checkDb, type BillingClickHouse } from './credits/clickhouse-store.ts';
import { BillingError } from './errors.ts';
import type { Invoice } from './invoice.ts';

export type PrepaidKind = 'purchase' | 'bonus' | 'applied';

export interface Commitment {
  tenantId: string;
  executionsPerMonth: number;
  /** `YYYY-MM`, the first month billed. */
  startMonth: string;
  termMonths: number;
  createdAt: number;
}

export interface PayoutRow {
  creator: string;
  month: string;
  earnedMicros: Micros;
  carriedInMicros: Micros;
  paidMicros: Micros;
  carryOutMicros: Micros;
  transferId: string;
  at: number;
}

/**
 * The usage-billing tables (billing migrations 0006-0009) in ClickHouse: prepaid dollars, commitments,
 * finalized invoices, what was reported to Stripe, creator payouts. Every row is keyed by what caused it, so
 * writing it again (a replayed webhook, a re-run, a second process) collapses into one (read with FINAL).
 */
export class UsageBillingStore {
  private readonly db: string;

  constructor(
    private readonly client: BillingClickHouse,
    database: string,
  ) {
    this.db = checkDb(database);
  }

  private async rows<T>(query: string, params: Record<string, unknown>): Promise<T[]> {
    try {
      const rs = await this.client.query({ query, query_params: params, format: 'JSONEachRow' });
      return await rs.json<T>();
    } catch (err) {
      throw new BillingError('FORGE_ERR_STORE_UNAVAILABLE', 'usage billing tables', { cause: err });
    }
  }

  private async insert(table: string, row: Record<string, unknown>): Promise<void> {
    try {
      await this.client.insert({ table: `${this.db}.${table}`, values: [row], format: 'JSONEachRow' });
    } catch (err) {
      throw new BillingError('FORGE_ERR_STORE_UNAVAILABLE', `insert into ${table}`, { cause: err });
    }
  }

  // ---------------------------------------------------------------- prepaid dollars

  /** Records a prepaid entry once per (tenant, entryId); `replay` when it was there already. */
  async prepaid(tenantId: string, entryId: string, kind: PrepaidKind, amountMicros: Micros, at: number, ref: string): Promise<{ replay: boolean }> {
    const had = await this.rows<{ n: string }>(`SELECT toString(count()) AS n FROM ${this.db}.billing_prepaid FINAL WHERE tenant_id = {t:String} AND entry_id = {e:String}`, { t: tenantId, e: entryId });
    if (Number(had[0]?.n ?? 0) > 0) return { replay: true };
    await this.insert('billing_prepaid', { tenant_id: tenantId, entry_id: entryId, kind, amount_micros: amountMicros, at, ref });
    return { replay: false };
  }

  /** The prepaid balance, USD micros, leaving out one entry (an invoice re-reading its own application). */
  async prepaidBalance(tenantId: string, exceptEntry = ''): Promise<Micros> {
    const r = await this.rows<{ s: string }>(`SELECT toString(sum(amount_micros)) AS s FROM ${this.db}.billing_prepaid FINAL WHERE tenant_id = {t:String} AND entry_id != {e:String}`, { t: tenantId, e: exceptEntry });
    return Number(r[0]?.s ?? 0);
  }

  async prepaidEntries(tenantId: string): Promise<{ entryId: string; kind: PrepaidKind; amountMicros: Micros; at: number; ref: string }[]> {
    const r = await this.rows<{ entry_id: string; kind: PrepaidKind; a: string; at_ms: string; ref: string }>(
      `SELECT entry_id, toString(kind) AS kind, toString(amount_micros) AS a, toString(toUnixTimestamp64Milli(at)) AS at_ms, ref FROM ${this.db}.billing_prepaid FINAL WHERE tenant_id = {t:String} ORDER BY at, entry_id`,
      { t: tenantId },
    );
    return r.map((x) => ({ entryId: x.entry_id, kind: x.kind, amountMicros: Number(x.a), at: Number(x.at_ms), ref: x.ref }));
  }

  // ---------------------------------------------------------------- commitments

  async putCommitment(c: Commitment): Promise<void> {
    await this.insert('billing_commitments', { tenant_id: c.tenantId, executions_per_month: c.executionsPerMonth, start_month: c.startMonth, term_months: c.termMonths, created_at: c.createdAt, version: c.createdAt });
  }

  async commitment(tenantId: string): Promise<Commitment | undefined> {
    const r = await this.rows<{ e: string; s: string; t: number; c: string }>(
      `SELECT toString(executions_per_month) AS e, start_month AS s, term_months AS t, toString(toUnixTimestamp64Milli(created_at)) AS c FROM ${this.db}.billing_commitments FINAL WHERE tenant_id = {t:String}`,
      { t: tenantId },
    );
    const x = r[0];
    return x ? { tenantId, executionsPerMonth: Number(x.e), startMonth: x.s, termMonths: Number(x.t), createdAt: Number(x.c) } : undefined;
  }

  // ---------------------------------------------------------------- invoices and Stripe reports

  async invoice(tenantId: string, month: string): Promise<Invoice | undefined> {
    const r = await this.rows<{ body: string }>(`SELECT body FROM ${this.db}.billing_invoices FINAL WHERE tenant_id = {t:String} AND month = {m:String}`, { t: tenantId, m: month });
    return r[0] ? (JSON.parse(r[0].body) as Invoice) : undefined;
  }

  async saveInvoice(inv: Invoice, at: number): Promise<void> {
    await this.insert('billing_invoices', { tenant_id: inv.tenantId, month: inv.month, total_micros: inv.totalMicros, body: JSON.stringify(inv), created_at: at });
  }

  async reported(tenantId: string, reportKey: string): Promise<boolean> {
    const r = await this.rows<{ n: string }>(`SELECT toString(count()) AS n FROM ${this.db}.billing_stripe_reports FINAL WHERE tenant_id = {t:String} AND report_key = {k:String}`, { t: tenantId, k: reportKey });
    return Number(r[0]?.n ?? 0) > 0;
  }

  async markReported(tenantId: string, reportKey: string, stripeId: string, amountMicros: Micros, at: number): Promise<void> {
    await this.insert('billing_stripe_reports', { tenant_id: tenantId, report_key: reportKey, stripe_id: stripeId, amount_micros: amountMicros, at });
  }

  // ---------------------------------------------------------------- creator payouts

  async payout(creator: string, month: string): Promise<PayoutRow | undefined> {
    return (await this.payouts(creator)).find((p) => p.month === month);
  }

  /** A creator's statements, oldest month first. */
  async payouts(creator: string): Promise<PayoutRow[]> {
    const r = await this.rows<{ month: string; e: string; ci: string; p: string; co: string; tr: string; at_ms: string }>(
      `SELECT month, toString(earned_micros) AS e, toString(carried_in_micros) AS ci, toString(paid_micros) AS p, toString(carry_out_micros) AS co, transfer_id AS tr,
              toString(toUnixTimestamp64Milli(at)) AS at_ms
       FROM ${this.db}.billing_creator_payouts FINAL WHERE creator = {c:String} ORDER BY month`,
      { c: creator },
    );
    return r.map((x) => ({ creator, month: x.month, earnedMicros: Number(x.e), carriedInMicros: Number(x.ci), paidMicros: Number(x.p), carryOutMicros: Number(x.co), transferId: x.tr, at: Number(x.at_ms) }));
  }

  async savePayout(p: PayoutRow): Promise<void> {
    await this.insert('billing_creator_payouts', {
      creator: p.creator, month: p.month, earned_micros: p.earnedMicros, carried_in_micros: p.carriedInMicros, paid_micros: p.paidMicros, carry_out_micros: p.carryOutMicros, transfer_id: p.transferId, at: p.at,
    });
  }
}

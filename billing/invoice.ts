import { dayLabel, dayOf, microsToUsd, type Micros } from '../rules/index.ts';
import { BillingError } from './errors.ts';
import type { Plan } from './plans.ts';
import { subscriptionPriceMicros } from './plans.ts';
import { commitmentCharge, overageCharge, paygCharge, paygUpgradeAdvice, priceAt, revenueSplit, tokenAmounts, type UsagePricing } from './usage-pricing.ts';

/** One finalized task of the cost log as billing prices it (its attribution and its LLM tokens per model). */
export interface BillableEvent {
  eventId: string;
  at: number;
  userId: string;
  agentId: string;
  skillId: string;
  /** '' (not attributed) counts as the platform's key. */
  keySource: '' | 'platform' | 'byok';
  llm: { model: string; inputTokens: number; outputTokens: number }[];
}

export type InvoiceLineKind = 'subscription' | 'tokens' | 'byok_tokens' | 'overage' | 'payg' | 'commitment' | 'commitment_overage' | 'premium_skill' | 'credits';

export interface InvoiceLine {
  /** Stable within the invoice (the Stripe report key is derived from it). */
  id: string;
  kind: InvoiceLineKind;
  description: string;
  quantity: number;
  /** Per unit, USD micros; null where the line is not quantity x unit (tokens, credits). */
  unitMicros: Micros | null;
  amountMicros: Micros;
  model?: string;
  skill?: string;
  inputTokens?: number;
  outputTokens?: number;
  /** Our cost of the line's tokens (platform keys), USD micros. */
  costMicros?: Micros;
}

export interface InvoiceDetail {
  key: string;
  executions: number;
  inputTokens: number;
  outputTokens: number;
  /** Token price on platform keys, USD micros. */
  priceMicros: Micros;
  /** Our cost of those tokens, USD micros. */
  costMicros: Micros;
}

export interface CreatorEarning {
  skill: string;
  creator: string;
  mode: 'share' | 'fixed';
  executions: number;
  revenueMicros: Micros;
  creatorMicros: Micros;
}

export interface Invoice {
  tenantId: string;
  /** `YYYY-MM` (UTC). */
  month: string;
  from: number;
  to: number;
  planId: string;
  executions: number;
  lines: InvoiceLine[];
  subtotalMicros: Micros;
  creditsAppliedMicros: Micros;
  totalMicros: Micros;
  byAgent: InvoiceDetail[];
  byDay: InvoiceDetail[];
  /** Tokens of models the price book has no entry for at the event's time (priced 0, listed so they are seen). */
  unpriced: { model: string; inputTokens: number; outputTokens: number }[];
  creatorEarnings: CreatorEarning[];
  notices: { code: 'payg_more_than_pro'; message: string }[];
}

export interface InvoiceInput {
  tenantId: string;
  month: string;
  from: number;
  to: number;
  plan: Plan;
  /** Pro, for the Pay As You Go comparison. */
  pro: Plan;
  account: { seats: number; byok: boolean; overageOptIn: boolean };
  pricing: UsagePricing;
  events: readonly BillableEvent[];
  /** An active commitment this month (executions per month). */
  commitment?: { executionsPerMonth: number } | null;
  /** Prepaid dollars available to this invoice, USD micros. */
  prepaidMicros: Micros;
}

const usd = microsToUsd;

function detail(map: Map<string, InvoiceDetail>, key: string): InvoiceDetail {
  let d = map.get(key);
  if (!d) map.set(key, (d = { key, executions: 0, inputTokens: 0, outputTokens: 0, priceMicros: 0, costMicros: 0 }));
  return d;
}

/**
 * A tenant's monthly invoice (pure): subscription, token lines per model (platform keys charged at the price
 * book's user price in force at each event; BYOK tokens tracked at 0), executions (overage, Pay As You Go or a
 * commitment), premium skills at a fixed price, then prepaid credits. Every event's tokens are priced once,
 * so the lines, the per-agent and the per-day detail are exact integer sums of the same figures, and the
 * lines add up to the total.
 */
export function buildInvoice(input: InvoiceInput): Invoice {
  const { plan, pricing } = input;
  const lines: InvoiceLine[] = [];
  const executions = input.events.length;

  const sub = plan.id === 'payg' ? 0 : subscriptionPriceMicros(plan, { byok: input.account.byok, seats: input.account.seats });
  if (sub !== null && sub > 0) {
    const seats = plan.perSeat ? Math.max(1, input.account.seats) : 1;
    lines.push({ id: 'subscription', kind: 'subscription', description: `${plan.name}${input.account.byok ? ' (BYOK)' : ''} subscription`, quantity: seats, unitMicros: sub / seats, amountMicros: sub });
  }

  const models = new Map<string, { byok: boolean; model: string; inputTokens: number; outputTokens: number; priceMicros: Micros; costMicros: Micros }>();
  const unpriced = new Map<string, { model: string; inputTokens: number; outputTokens: number }>();
  const byAgent = new Map<string, InvoiceDetail>();
  const byDay = new Map<string, InvoiceDetail>();
  const skillRevenue = new Map<string, { executions: number; revenueMicros: Micros }>();
  for (const e of input.events) {
    const byok = e.keySource === 'byok';
    const agent = detail(byAgent, e.agentId || '(none)');
    const day = detail(byDay, dayLabel(dayOf(e.at)));
    agent.executions++;
    day.executions++;
    let eventPrice = 0;
    let eventCost = 0;
    for (const t of e.llm) {
      const entry = priceAt(pricing.priceBook, t.model, e.at);
      if (!entry) {
        const u = unpriced.get(t.model) ?? { model: t.model, inputTokens: 0, outputTokens: 0 };
        u.inputTokens += t.inputTokens;
        u.outputTokens += t.outputTokens;
        unpriced.set(t.model, u);
        continue;
      }
      const a = tokenAmounts(entry, t.inputTokens, t.outputTokens);
      const k = `${byok ? 'byok' : 'platform'}|${t.model}`;
      const m = models.get(k) ?? { byok, model: t.model, inputTokens: 0, outputTokens: 0, priceMicros: 0, costMicros: 0 };
      m.inputTokens += t.inputTokens;
      m.outputTokens += t.outputTokens;
      if (!byok) {
        m.priceMicros += a.priceMicros;
        m.costMicros += a.costMicros;
        eventPrice += a.priceMicros;
        eventCost += a.costMicros;
      }
      models.set(k, m);
      for (const d of [agent, day]) {
        d.inputTokens += t.inputTokens;
        d.outputTokens += t.outputTokens;
      }
    }
    agent.priceMicros += eventPrice;
    day.priceMicros += eventPrice;
    agent.costMicros += eventCost;
    day.costMicros += eventCost;
    if (e.skillId && pricing.premiumSkills[e.skillId]) {
      const s = skillRevenue.get(e.skillId) ?? { executions: 0, revenueMicros: 0 };
      s.executions++;
      s.revenueMicros += eventPrice;
      skillRevenue.set(e.skillId, s);
    }
  }
  for (const m of [...models.values()].sort((a, b) => Number(a.byok) - Number(b.byok) || (a.model < b.model ? -1 : 1))) {
    lines.push({
      id: `${m.byok ? 'byok-tokens' : 'tokens'}:${m.model}`,
      kind: m.byok ? 'byok_tokens' : 'tokens',
      description: m.byok ? `${m.model} tokens on your own key (tracked, not charged)` : `${m.model} tokens`,
      quantity: m.inputTokens + m.outputTokens,
      unitMicros: null,
      amountMicros: m.byok ? 0 : m.priceMicros,
      model: m.model,
      inputTokens: m.inputTokens,
      outputTokens: m.outputTokens,
      ...(m.byok ? {} : { costMicros: m.costMicros }),
    });
  }

  const notices: Invoice['notices'] = [];
  if (input.commitment) {
    const c = commitmentCharge(pricing.commitments, input.commitment.executionsPerMonth, executions);
    lines.push({
      id: 'commitment', kind: 'commitment', description: `Committed use: ${input.commitment.executionsPerMonth} executions at ${c.tier.discountPercent}% off (saved ${usd(c.discountMicros)} USD)`,
      quantity: input.commitment.executionsPerMonth, unitMicros: null, amountMicros: c.committedMicros,
    });
    if (c.overExecutions > 0) {
      lines.push({ id: 'commitment-overage', kind: 'commitment_overage', description: 'Executions past the commitment at the standard rate', quantity: c.overExecutions, unitMicros: pricing.commitments.standardExecutionMicros, amountMicros: c.overMicros });
    }
  } else if (plan.id === 'payg') {
    const p = paygCharge(pricing.payAsYouGo, executions);
    lines.push({ id: 'payg', kind: 'payg', description: `Pay As You Go executions${p.capped ? ' (monthly cap reached)' : ''}`, quantity: executions, unitMicros: pricing.payAsYouGo.perExecutionMicros, amountMicros: p.micros });
    const advice = paygUpgradeAdvice(pricing, input.pro, executions);
    if (advice.upgrade) notices.push({ code: 'payg_more_than_pro', message: `this month cost ${usd(advice.paygMicros)} USD on Pay As You Go; on Pro it would have cost ${usd(advice.proMicros)} USD` });
  } else {
    const o = overageCharge(plan, executions, input.account.seats, input.account.overageOptIn);
    if (o.executions > 0) lines.push({ id: 'overage', kind: 'overage', description: `Executions past the ${plan.name} plan's included ones`, quantity: o.executions, unitMicros: o.unitMicros, amountMicros: o.micros });
  }

  const creatorEarnings: CreatorEarning[] = [];
  for (const [skill, s] of [...skillRevenue.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const premium = pricing.premiumSkills[skill];
    if (!premium) continue;
    if (premium.mode === 'fixed') {
      const amount = s.executions * premium.pricePerExecutionMicros;
      lines.push({ id: `premium:${skill}`, kind: 'premium_skill', description: `Premium skill ${skill}`, quantity: s.executions, unitMicros: premium.pricePerExecutionMicros, amountMicros: amount, skill });
      creatorEarnings.push({ skill, creator: premium.creator, mode: 'fixed', executions: s.executions, revenueMicros: amount, creatorMicros: amount });
    } else {
      creatorEarnings.push({ skill, creator: premium.creator, mode: 'share', executions: s.executions, revenueMicros: s.revenueMicros, creatorMicros: revenueSplit(s.revenueMicros, premium.creatorPercent).creatorMicros });
    }
  }

  const subtotalMicros = lines.reduce((s, l) => s + l.amountMicros, 0);
  const creditsAppliedMicros = Math.max(0, Math.min(input.prepaidMicros, subtotalMicros));
  if (creditsAppliedMicros > 0) lines.push({ id: 'credits', kind: 'credits', description: 'Prepaid credits applied', quantity: 1, unitMicros: null, amountMicros: -creditsAppliedMicros });
  const totalMicros = subtotalMicros - creditsAppliedMicros;
  const invoice: Invoice = {
    tenantId: input.tenantId, month: input.month, from: input.from, to: input.to, planId: plan.id, executions, lines, subtotalMicros, creditsAppliedMicros, totalMicros,
    byAgent: [...byAgent.values()].sort((a, b) => (a.key < b.key ? -1 : 1)), byDay: [...byDay.values()].sort((a, b) => (a.key < b.key ? -1 : 1)),
    unpriced: [...unpriced.values()], creatorEarnings, notices,
  };
  assertInvoiceAddsUp(invoice);
  return invoice;
}

/** Throws unless the lines add up to the total and the detail adds up to the token lines, to the micro-dollar. */
export function assertInvoiceAddsUp(inv: Invoice): void {
  const sum = inv.lines.reduce((s, l) => s + l.amountMicros, 0);
  if (sum !== inv.totalMicros) throw new BillingError('FORGE_ERR_BILLING_LEDGER_UNBALANCED', `invoice ${inv.tenantId} ${inv.month}: lines ${sum} != total ${inv.totalMicros}`);
  const tokens = inv.lines.filter((l) => l.kind === 'tokens').reduce((s, l) => s + l.amountMicros, 0);
  for (const [name, d] of [['agent', inv.byAgent], ['day', inv.byDay]] as const) {
    const t = d.reduce((s, x) => s + x.priceMicros, 0);
    const n = d.reduce((s, x) => s + x.executions, 0);
    if (t !== tokens || n !== inv.executions) throw new BillingError('FORGE_ERR_BILLING_LEDGER_UNBALANCED', `invoice ${inv.tenantId} ${inv.month}: per-${name} detail does not add up`);
  }
}

/** The invoice as CSV: one row per line, then subtotal, credits and total. */
export function invoiceCsv(inv: Invoice): string {
  const esc = (v: string | number): string => {
    const s = String(v);
    return /[",\n\r]/.test(s) || /^[=+\-@\t]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const rows: (string | number)[][] = [['line_id', 'kind', 'description', 'quantity', 'unit_usd', 'amount_usd']];
  for (const l of inv.lines) rows.push([l.id, l.kind, l.description, l.quantity, l.unitMicros === null ? '' : usd(l.unitMicros), usd(l.amountMicros)]);
  rows.push(['subtotal', '', '', '', '', usd(inv.subtotalMicros)], ['credits_applied', '', '', '', '', usd(inv.creditsAppliedMicros)], ['total', '', '', '', '', usd(inv.totalMicros)]);
  return rows.map((r) => r.map(esc).join(',')).join('\r\n') + '\r\n';
}

/** A printable HTML page of the invoice (every text escaped). */
export function invoiceHtml(inv: Invoice): string {
  const h = (s: string | number): string => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const row = (cells: (string | number)[], tag = 'td') => `<tr>${cells.map((c) => `<${tag}>${h(c)}</${tag}>`).join('')}</tr>`;
  const lines = inv.lines.map((l) => row([l.description, l.quantity, l.unitMicros === null ? '' : usd(l.unitMicros), usd(l.amountMicros)])).join('\n');
  const det = (title: string, d: InvoiceDetail[]) =>
    `<h2>${h(title)}</h2><table>${row(['', 'executions', 'input tokens', 'output tokens', 'price USD'], 'th')}${d.map((x) => row([x.key, x.executions, x.inputTokens, x.outputTokens, usd(x.priceMicros)])).join('')}</table>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Invoice ${h(inv.tenantId)} ${h(inv.month)}</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;color:#111}table{border-collapse:collapse;margin-bottom:1.5rem}td,th{border-bottom:1px solid #ccc;padding:.3rem .8rem;text-align:right}td:first-child,th:first-child{text-align:left}@media print{a{display:none}}</style>
</head><body>
<h1>Invoice ${h(inv.month)}</h1>
<p>Tenant <strong>${h(inv.tenantId)}</strong> · plan ${h(inv.planId)} · ${h(inv.executions)} executions</p>
<table id="lines">${row(['line', 'quantity', 'unit USD', 'amount USD'], 'th')}
${lines}
${row(['Subtotal', '', '', usd(inv.subtotalMicros)])}
${row(['Credits applied', '', '', usd(-inv.creditsAppliedMicros)])}
<tr id="total"><th>Total</th><td></td><td></td><th>${h(usd(inv.totalMicros))}</th></tr>
</table>
${inv.notices.map((n) => `<p class="notice">${h(n.message)}</p>`).join('\n')}
${det('By agent', inv.byAgent)}
${det('By day', inv.byDay)}
</body></html>
`;
}

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startForge, type RunningForge } from '../cli/forge-process.ts';
import { COMPONENTS, usdToMicros } from '../rules/index.ts';
import { FOCUS_COLUMNS } from '../store/index.ts';

// GET /v1/reports/focus: the cost log as FOCUS 1.3 CSV, checked against the specification's column list and
// against the log's own totals to the micro-dollar.

const NOW = Date.parse('2026-03-03T12:00:00Z');
const RANGE = { from: Date.parse('2026-02-01T00:00:00Z'), to: Date.parse('2026-03-04T00:00:00Z') };
let forge: RunningForge;
let admin: string;
let finance: string;
const auth = (k: string) => ({ authorization: `Bearer ${k}` });

/**
 * The FOCUS 1.3 Cost and Usage columns a dataset carries (the specification's column library: Mandatory
 * ones, and the Conditional ones that apply to Forge's charges), by their names in the specification.
 */
const SPEC_COLUMNS = [
  'BilledCost', 'BillingAccountId', 'BillingAccountName', 'BillingAccountType', 'BillingCurrency', 'BillingPeriodEnd', 'BillingPeriodStart',
  'ChargeCategory', 'ChargeClass', 'ChargeDescription', 'ChargeFrequency', 'ChargePeriodEnd', 'ChargePeriodStart',
  'ConsumedQuantity', 'ConsumedUnit', 'ContractedCost', 'ContractedUnitPrice', 'EffectiveCost', 'HostProviderName', 'InvoiceIssuerName',
  'ListCost', 'ListUnitPrice', 'PricingCategory', 'PricingCurrency', 'PricingQuantity', 'PricingUnit', 'ResourceId', 'ResourceName',
  'ResourceType', 'ServiceCategory', 'ServiceName', 'ServiceProviderName', 'ServiceSubcategory', 'SkuId', 'SkuMeter', 'SkuPriceId',
  'SubAccountId', 'SubAccountName', 'SubAccountType', 'Tags',
];
const SERVICE_CATEGORIES = new Set(['AI and Machine Learning', 'Analytics', 'Business Applications', 'Compute', 'Databases', 'Developer Tools', 'Multicloud', 'Identity', 'Integration', 'Internet of Things', 'Management and Governance', 'Media', 'Migration', 'Mobile', 'Networking', 'Security', 'Storage', 'Web', 'Other']);

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'forge-focus-'));
  writeFileSync(join(dir, 'bands.yaml'), 'global:\n  B_day_soft: 2500\n  B_day_hard: 10000\n  B_week_soft: 40000\n  B_week_hard: 50000\n  B_run_cap: 100000\n  B_unit_cap: 10000\ntenants:\n  demo: {}\n  other: {}\n');
  writeFileSync(
    join(dir, 'pricing.yaml'),
    'compute:\n  environments:\n    cpu: "0.40"\nstorage:\n  gb_stored: "300"\n  gb_month_usd: "0.23"\n  expected_tasks_day: 7\nllm:\n  models:\n    gpt-4o-mini: { input_per_mtok_usd: "0.15", output_per_mtok_usd: "0.60" }\nbandwidth:\n  usd_per_gb: "0.09"\nnative_price:\n  source: fixed\n  usd: "2500"\n',
  );
  forge = await startForge({
    env: { FORGE_DATA_DIR: join(dir, 'data'), FORGE_PORT: '0', FORGE_BUDGETS_FILE: join(dir, 'bands.yaml'), FORGE_PRICING_FILE: join(dir, 'pricing.yaml'), FORGE_LOG_LEVEL: 'silent' },
    now: () => NOW,
    log: () => undefined,
  });
  admin = (await forge.keys.create({ name: 'admin', roles: ['admin'], tenantId: null })).key;
  finance = (await forge.keys.create({ name: 'fin', roles: ['finance'], tenantId: 'demo' })).key;
  const events = Array.from({ length: 40 }, (_, i) => ({
    event_id: `f-${i}`,
    tenant_id: i % 5 === 0 ? 'other' : 'demo',
    run_id: `r${i % 3}`,
    task_id: `t-${i}`,
    task_type: 'eval',
    environment: 'cpu',
    status: i % 7 === 0 ? 'failed' : 'success',
    finalized_at: new Date(Date.parse('2026-02-20T00:00:00Z') + i * 5 * 3_600_000 + i * 1_234).toISOString(),
    rli_eval_usd: `0.${String(100 + i * 37).padStart(3, '0')}`,
    task_hours: `${i % 4}.25`,
    gas: { gas_used: 21_000 + i * 999, gas_price_gwei: '3.3', chain_id: 1 },
    llm: [{ model: 'gpt-4o-mini', input_tokens: 1_000 + i * 77, output_tokens: 100 + i * 13 }],
    ...(i % 2 === 0 ? { bandwidth_gb: `${i}.123` } : {}),
  }));
  const r = await forge.app.inject({ method: 'POST', url: '/v1/events', headers: auth(admin), payload: { events } });
  expect(r.statusCode, r.body).toBe(200);
  await forge.guardrail.drain();
});
afterAll(async () => {
  await forge?.close();
});

/** RFC 4180 CSV. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      row.push(cell);
      cell = '';
    } else if (ch === '\r' && text[i + 1] === '\n') {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
      i++;
    } else cell += ch;
  }
  return rows;
}

async function focus(qs: string, key = finance) {
  return forge.app.inject({ method: 'GET', url: `/v1/reports/focus?${qs}`, headers: auth(key) });
}

describe('FOCUS export', () => {
  it('has the columns of the FOCUS 1.3 specification and Forge\'s x_ columns', async () => {
    const res = await focus(`scope=tenant:demo&from=2026-02-01T00:00:00Z&to=2026-03-04T00:00:00Z`);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/csv/);
    const [header] = parseCsv(res.body);
    expect(header).toEqual([...FOCUS_COLUMNS]);
    for (const c of SPEC_COLUMNS) expect(header, c).toContain(c);
    for (const c of ['x_TenantId', 'x_RunId', 'x_TaskId', 'x_AgentId', 'x_CostComponent']) expect(header).toContain(c);
    // Custom columns are x_-prefixed; every other column is one of the specification's (PascalCase) names.
    for (const c of header!) expect(c).toMatch(/^(x_[A-Za-z]+|[A-Z][A-Za-z]+)$/);
  });

  it('totals equal the cost log\'s totals to the micro-dollar, in total and per component; rows are well-formed FOCUS values', async () => {
    for (const [scope, ls] of [['tenant:demo', { tenantId: 'demo' }], ['run:demo%2Fr1', { tenantId: 'demo', runId: 'r1' }]] as const) {
      const res = await focus(`scope=${scope}&from=2026-02-01T00:00:00Z&to=2026-03-04T00:00:00Z`);
      expect(res.statusCode, res.body).toBe(200);
      const [header, ...rows] = parseCsv(res.body);
      const col = (name: string) => header!.indexOf(name);
      const log = await forge.store.totals(ls, RANGE);
      expect(log.tasks).toBeGreaterThan(5);
      for (const money of ['BilledCost', 'EffectiveCost', 'ListCost', 'ContractedCost']) {
        expect(rows.reduce((s, r) => s + usdToMicros(r[col(money)]!), 0), money).toBe(log.totalMicros);
      }
      for (const c of COMPONENTS) {
        const sum = rows.filter((r) => r[col('x_CostComponent')] === c).reduce((s, r) => s + usdToMicros(r[col('BilledCost')]!), 0);
        expect(sum, c).toBe(log.components[c]);
      }
      expect(log.components.bandwidth).toBeGreaterThan(0);
      expect(new Set(rows.map((r) => r[col('x_TaskId')])).size).toBe(log.tasks);
      for (const r of rows) {
        expect(r[col('BillingCurrency')]).toBe('USD');
        expect(r[col('ChargeCategory')]).toBe('Usage');
        expect(r[col('x_TenantId')]).toBe('demo');
        expect(SERVICE_CATEGORIES.has(r[col('ServiceCategory')]!)).toBe(true);
        expect(Date.parse(r[col('ChargePeriodStart')]!)).toBeLessThan(Date.parse(r[col('ChargePeriodEnd')]!));
        expect(JSON.parse(r[col('Tags')]!)).toMatchObject({ 'forge.task_type': 'eval' });
      }
      const bw = rows.find((r) => r[col('x_CostComponent')] === 'bandwidth')!;
      expect([bw[col('ConsumedUnit')], bw[col('PricingUnit')], bw[col('ServiceCategory')]]).toEqual(['GB', 'GB', 'Networking']);
      expect(usdToMicros(bw[col('BilledCost')]!)).toBe(usdToMicros(String(Number(bw[col('ConsumedQuantity')]) * 0.09)));
    }
  });

  it('is a finance report of the key\'s own tenant', async () => {
    expect((await focus('scope=tenant:other')).statusCode).toBe(403);
    const auditor = (await forge.keys.create({ name: 'aud', roles: ['auditor'], tenantId: 'demo' })).key;
    expect((await focus('scope=tenant:demo', auditor)).statusCode).toBe(403);
  });
});

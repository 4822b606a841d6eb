/// <reference lib="dom" />
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { computedStyle, launchChromium, SHARED_STYLE } from './helpers/chromium.ts';
import { billingRoutes } from '../api/routes/billing.ts';
import { billingFromConfig, type BillingParts } from '../billing/index.ts';
import { billingPageRoutes } from '../dashboards/index.ts';
import { openStore, type CostEvent, type Store } from '../store/index.ts';
import { costEvent, makeTestApi, type TestApi } from './helpers/api.ts';
import { freshTenant, tempDataDir } from './helpers/store-events.ts';

// The billing page in a real browser (Debian's chromium, headless): usage this month, cost and price by model,
// agent and day, the invoices; it refreshes on its own when new usage reaches the cost log.

const ARTIFACTS = join(import.meta.dirname, '..', 'test-artifacts');
const tmp = tempDataDir('forge-billing-page');
const tenant = freshTenant('bill');
let store: Store;
let parts: BillingParts;
let t: TestApi;
let base: string;
let userData: string;
let ctx: BrowserContext;
let page: Page;

// The page asks for the months around the browser's clock: the server's clock is the real one here.
const NOW = Date.now();
const monthStart = Date.UTC(new Date(NOW).getUTCFullYear(), new Date(NOW).getUTCMonth(), 1);
const at = (minutesAgo: number) => Math.max(monthStart, NOW - minutesAgo * 60_000);
const ev = (minutesAgo: number, over: Partial<CostEvent>): CostEvent => costEvent({ tenantId: tenant, totalMicros: 1, eventTime: at(minutesAgo), ...over });

beforeAll(async () => {
  store = await openStore({ dataDir: tmp.dir, writer: { flushIntervalMs: 10 } });
  parts = await billingFromConfig({ env: {}, store, onError: (e) => { throw e; } });
  t = await makeTestApi({
    parts: {
      plugins: [async (app) => app.register(billingRoutes, { ...parts, now: () => t.clock.now }), async (app) => app.register(billingPageRoutes)],
    },
  });
  t.clock.now = NOW;
  base = await t.app.listen({ host: '127.0.0.1', port: 0 });
  await store.writer.write([
    ev(30, { agentId: 'agent-a', userId: 'u1', keySource: 'platform', llmTokens: [{ model: 'claude-sonnet', inputTokens: 10_000, outputTokens: 2_000 }] }),
    ev(20, { agentId: 'agent-b', userId: 'u2', keySource: 'byok', llmTokens: [{ model: 'gpt-4o', inputTokens: 50_000, outputTokens: 0 }] }),
  ]);
  userData = mkdtempSync(join(tmpdir(), 'forge-chromium-'));
  ({ ctx, page } = await launchChromium(userData));
}, 120_000);

afterAll(async () => {
  await ctx?.close();
  await t?.close();
  await parts?.close();
  await store?.close();
  if (userData) rmSync(userData, { recursive: true, force: true });
  tmp.remove();
});

const textOf = (id: string): Promise<string> => page.locator(`#${id}`).innerText();
const cells = (table: string): Promise<string[][]> =>
  page.locator(`#${table} tbody tr`).evaluateAll((trs) => trs.map((tr) => Array.from(tr.querySelectorAll('td')).map((td) => (td.textContent ?? '').trim())));

describe('billing page in chromium', () => {
  it('shows this month\'s usage, cost and price by model, agent and day, and updates live', async () => {
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    await page.goto(`${base}/billing?refresh_ms=300`);
    await page.fill('#api-key', t.key(['finance'], tenant));
    await page.fill('#tenant', tenant);
    await page.click('#load');
    await page.waitForFunction(() => document.body.dataset.ready === '1' || document.body.dataset.ready === 'error', undefined, { timeout: 30_000 });
    expect(await page.locator('body').getAttribute('data-ready')).toBe('1');

    expect(await textOf('executions')).toBe('2');
    expect(await textOf('tokens')).toBe('62,000');
    // Free plan: no fee; Sonnet 10K x 6 + 2K x 30 per 1M = 0.12 USD; BYOK tracked at 0.
    expect(await textOf('total-usd')).toBe('0.12 USD');
    expect(await textOf('cost-usd')).toBe('0.06 USD'); // 10K x 3 + 2K x 15 per 1M
    expect(await cells('by-model')).toEqual([
      ['claude-sonnet', '10,000', '2,000', '0.06', '0.12'],
      ['gpt-4o (your key)', '50,000', '0', '0', '0'],
    ]);
    expect(await cells('by-agent')).toEqual([
      ['agent-a', '1', '12,000', '0.06', '0.12'],
      ['agent-b', '1', '50,000', '0', '0'],
    ]);
    expect((await cells('by-day')).map((r) => r[1])).toEqual(['2']);
    expect((await cells('invoices'))[0]).toEqual([new Date(NOW).toISOString().slice(0, 7), 'draft', '0.12']);

    // New usage reaches the cost log: the page shows it without a reload.
    await store.writer.write([ev(10, { agentId: 'agent-a', keySource: 'platform', llmTokens: [{ model: 'claude-haiku', inputTokens: 1_000_000, outputTokens: 0 }] })]);
    await page.waitForFunction(() => document.getElementById('executions')?.textContent === '3', undefined, { timeout: 30_000 });
    expect(await textOf('total-usd')).toBe('0.62 USD');
    expect(await cells('by-agent')).toEqual([
      ['agent-a', '2', '1,012,000', '0.31', '0.62'],
      ['agent-b', '1', '50,000', '0', '0'],
    ]);
    expect(errors).toEqual([]);
    // Styled by the shared sheet: the grid of panels, right-aligned number columns.
    expect(await computedStyle(page, 'body', Object.keys(SHARED_STYLE.body))).toEqual(SHARED_STYLE.body);
    expect(await computedStyle(page, 'section h2', Object.keys(SHARED_STYLE.sectionH2))).toEqual(SHARED_STYLE.sectionH2);
    expect(await computedStyle(page, 'main', ['display'])).toEqual({ display: 'grid' });
    expect(await computedStyle(page, '#by-model tbody td.num', ['text-align'])).toEqual({ 'text-align': 'right' });
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'billing-page.png'), fullPage: true });
  });

  it('says why when the key may not see the tenant, and shows nothing', async () => {
    await page.goto(`${base}/billing`);
    await page.fill('#api-key', t.key(['finance'], 'someone-else'));
    await page.fill('#tenant', tenant);
    await page.click('#load');
    await page.waitForFunction(() => document.body.dataset.ready === 'error', undefined, { timeout: 30_000 });
    expect(await page.locator('#content').isHidden()).toBe(true);
    expect(await textOf('status')).toMatch(/tenant/i);
  });
});

/// <reference lib="dom" />
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BurnData } from '../dashboards/index.ts';
import { makeBurnPageApp, type BurnPageApp } from './helpers/burn-page-app.ts';
import { computedStyle, launchChromium, SHARED_STYLE } from './helpers/chromium.ts';

// The burn page in a real browser (Debian's chromium, headless): it loads with the seeded history, draws
// its charts, and shows the numbers the API returns. A screenshot goes to test-artifacts/.

const ARTIFACTS = join(import.meta.dirname, '..', 'test-artifacts');
let t: BurnPageApp;
let base: string;
let userData: string;
let ctx: BrowserContext;
let page: Page;

beforeAll(async () => {
  t = await makeBurnPageApp('forge-burn-browser');
  base = await t.api.app.listen({ host: '127.0.0.1', port: 0 });
  userData = mkdtempSync(join(tmpdir(), 'forge-chromium-'));
  ({ ctx, page } = await launchChromium(userData));
}, 120_000);

afterAll(async () => {
  await ctx?.close();
  await t?.close();
  if (userData) rmSync(userData, { recursive: true, force: true });
});

const usd = (v: number, d = 2): string => new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', minimumFractionDigits: d, maximumFractionDigits: d }).format(v);
const textOf = (id: string): Promise<string> => page.locator(`#${id}`).innerText();

async function showWithKey(key: string, tenant = '', run = ''): Promise<void> {
  await page.fill('#api-key', key);
  await page.fill('#tenant', tenant);
  await page.fill('#run', run);
  await page.click('#load');
  await page.waitForFunction(() => document.body.dataset.ready === '1' || document.body.dataset.ready === 'error', undefined, { timeout: 30_000 });
}

/** Pixels of a canvas that are not transparent: a drawn chart has thousands, an empty canvas none. */
function paintedPixels(id: string): Promise<number> {
  return page.evaluate((canvasId) => {
    const c = document.getElementById(canvasId) as HTMLCanvasElement;
    const img = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < img.length; i += 4) if (img[i]! > 0) n++;
    return n;
  }, id);
}

describe('burn page in chromium', () => {
  it('loads with seeded data, draws the charts and shows the API\'s numbers', async () => {
    const key = t.api.key(['finance'], t.tenant);
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    await page.goto(`${base}/`);
    expect(await paintedPixels('daily-chart')).toBe(0);
    await showWithKey(key);
    expect(await page.locator('body').getAttribute('data-ready')).toBe('1');
    expect(errors).toEqual([]);

    // What the API says, asked with the same key.
    const res = await fetch(`${base}/v1/burn/data`, { headers: { authorization: `Bearer ${key}` } });
    expect(res.status).toBe(200);
    const d = (await res.json()) as BurnData;

    // The charts are drawn, with the API's series.
    expect(await paintedPixels('daily-chart')).toBeGreaterThan(1000);
    expect(await paintedPixels('composition-chart')).toBeGreaterThan(1000);
    const drawn = await page.evaluate(() => {
      const chart = (window as unknown as { Chart: { getChart(el: HTMLCanvasElement): { data: { labels: string[]; datasets: Array<{ label: string; data: number[] }> } } } }).Chart;
      const c = chart.getChart(document.getElementById('daily-chart') as HTMLCanvasElement);
      return { labels: c.data.labels, datasets: c.data.datasets.map((s) => ({ label: s.label, data: s.data })) };
    });
    expect(drawn.labels).toEqual(d.daily.map((x) => x.day));
    expect(drawn.datasets[0]!.data).toEqual(d.daily.map((x) => x.totalUsd));
    expect(drawn.datasets.map((s) => s.label)).toEqual(['daily total', 'B_day_soft', 'B_day_hard']);
    expect(new Set(drawn.datasets[1]!.data)).toEqual(new Set([d.bands.daySoftUsd]));

    // The numbers on the page are the API's, formatted.
    const total30 = d.daily.reduce((s, x) => s + x.totalUsd, 0);
    expect(await textOf('today-usd')).toBe(usd(d.daily.at(-1)!.totalUsd));
    expect(await textOf('total-30d-usd')).toBe(usd(total30));
    expect(await textOf('day-soft-usd')).toBe(usd(d.bands.daySoftUsd));
    expect(await textOf('day-hard-usd')).toBe(usd(d.bands.dayHardUsd));
    expect(await textOf('cost-per-operation')).toBe(usd(d.unit.costPerOperationUsd!, 4));
    expect(await textOf('cost-per-success')).toBe(usd(d.unit.costPerSuccessUsd!, 4));
    expect(await textOf('operations')).toBe(`${d.unit.operations} (${d.unit.succeeded})`);
    expect(await textOf('run-spend-usd')).toBe(usd(d.runway.runSpendUsd));
    expect(await textOf('run-cap-usd')).toBe(usd(d.bands.runCapUsd));
    expect(await textOf('remaining-usd')).toBe(usd(d.runway.remainingUsd));
    expect(await textOf('avg-day-usd')).toBe(usd(d.runway.avgDayUsd));
    expect(await textOf('runway-days')).toBe(`${d.runway.days!.toFixed(1)} days`);
    expect(await textOf('stops-warning')).toBe(String(d.stopConditions24h.warning));
    expect(await textOf('stops-hard')).toBe(String(d.stopConditions24h.hardStop));
    expect(await textOf('stops-emergency')).toBe(String(d.stopConditions24h.emergencyStop));
    const cards = await page.locator('#states .state').evaluateAll((els) => els.map((e) => ({ scope: (e as HTMLElement).dataset.scope, state: (e as HTMLElement).dataset.state })));
    expect(cards).toEqual(d.states);
    expect(await page.locator('#recent-stops tr').count()).toBe(d.recentStops.length);
    // And they are the hand-checked ones (helpers/burn-seed.ts), not just self-consistent.
    expect(await textOf('total-30d-usd')).toBe('$17.74');
    expect(await textOf('stops-hard')).toBe('1');
    // Styled by the shared sheet (the grid of panels) and the page's own rules (chart height, state colours).
    expect(await computedStyle(page, 'body', Object.keys(SHARED_STYLE.body))).toEqual(SHARED_STYLE.body);
    expect(await computedStyle(page, 'section h2', Object.keys(SHARED_STYLE.sectionH2))).toEqual(SHARED_STYLE.sectionH2);
    expect(await computedStyle(page, 'main', ['display'])).toEqual({ display: 'grid' });
    expect(await computedStyle(page, '.chart', ['height'])).toEqual({ height: '300px' });
    const colour: Record<string, string> = { NORMAL: 'rgb(46, 125, 50)', WARNING: 'rgb(239, 108, 0)', HARD_STOP: 'rgb(198, 40, 40)', EMERGENCY_STOP: 'rgb(106, 27, 154)' };
    const painted = await page.locator('#states .state').evaluateAll((els) => els.map((e) => [(e as HTMLElement).dataset.state, getComputedStyle(e).backgroundColor]));
    expect(painted.length).toBeGreaterThan(0);
    expect(painted).toEqual(painted.map(([state]) => [state, colour[state!]]));

    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, 'burn-page.png');
    await page.screenshot({ path: shot, fullPage: true });
    expect(statSync(shot).size).toBeGreaterThan(10_000);
  });

  it('shows the tenant\'s incidents as the API lists them: opened by an EMERGENCY_STOP, resolved with a note; not another tenant\'s', async () => {
    const now = t.api.clock.now;
    const mine = await t.incidents.onStateChange({ scope: `tenant:${t.tenant}`, state: 'EMERGENCY_STOP', previous: 'HARD_STOP', seq: 41, at: now - 3_600_000, reason: 'day_emergency: 2.31 USD >= 2.2 USD', holds: [], weekMicros: 0 });
    const theirs = await t.incidents.onStateChange({ scope: `tenant:${t.other}`, state: 'EMERGENCY_STOP', previous: 'NORMAL', seq: 3, at: now - 1_800_000, reason: 'unit_emergency', holds: [], weekMicros: 0 });
    expect(mine && theirs).toBeTruthy();
    await t.incidents.resolve({ tenantId: t.tenant }, mine!.id, 'key:oncall', 'raised B_day_hard after review');
    const key = t.api.key(['finance'], t.tenant);
    await showWithKey(key);
    await page.waitForFunction(() => document.body.dataset.incidents === '1' || document.body.dataset.incidents === 'error', undefined, { timeout: 30_000 });
    expect(await page.locator('body').getAttribute('data-incidents')).toBe('1');
    const rows = await page.locator('#incidents tr').evaluateAll((els) => els.map((e) => ({ id: (e as HTMLElement).dataset.id, status: (e as HTMLElement).dataset.status, cells: Array.from(e.querySelectorAll('td'), (td) => td.textContent) })));
    const res = await fetch(`${base}/v1/incidents?tenant_id=${t.tenant}`, { headers: { authorization: `Bearer ${key}` } });
    const api = (await res.json()) as { incidents: Array<{ id: string; status: string }> };
    expect(rows.map((r) => r.id)).toEqual(api.incidents.map((i) => i.id));
    expect(rows.map((r) => r.id)).not.toContain(theirs!.id);
    const row = rows.find((r) => r.id === mine!.id)!;
    expect(row.status).toBe('resolved');
    expect(row.cells).toEqual([new Date(now - 3_600_000).toISOString().replace('T', ' ').slice(0, 19), `tenant:${t.tenant}`, 'resolved', 'day_emergency: 2.31 USD >= 2.2 USD', 'raised B_day_hard after review']);
  });

  it('keeps the key for the tab: a reload shows the data again without asking', async () => {
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.ready === '1', undefined, { timeout: 30_000 });
    expect(await textOf('total-30d-usd')).toBe('$17.74');
  });

  it('a key of another tenant gets an error message, no numbers', async () => {
    await showWithKey(t.api.key(['finance'], t.other), t.tenant);
    expect(await page.locator('body').getAttribute('data-ready')).toBe('error');
    expect(await textOf('status')).toContain('another tenant');
    expect(await page.locator('#content').isHidden()).toBe(true);
  });
});

/// <reference lib="dom" />
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddedEvalEngine } from '../cli/eval-engine.ts';
import { startForge, type RunningForge } from '../cli/forge-process.ts';
import { loadEvalSuite, packAgentDir, REFERENCE_AGENT_DIR, writeZip } from '../eval/index.ts';
import { computedStyle, launchChromium, SHARED_STYLE } from './helpers/chromium.ts';

// The eval leaderboard and run view in a real browser (Debian's chromium, headless) over an embedded Forge
// with two runs: the reference agent on five healthcare tasks (published) and a crashing agent (private).
const ARTIFACTS = join(import.meta.dirname, '..', 'test-artifacts');
const dir = mkdtempSync(join(tmpdir(), 'forge-eval-pages-'));
const SUITE = loadEvalSuite('config/eval/healthcare-v1.yaml');
const IDS = ['payer-01-claim-adjudication', 'payer-06-prior-authorization', 'payer-17-eligibility', 'provider-02-coding', 'provider-11-scheduling'];
let forge: RunningForge;
let ctx: BrowserContext;
let page: Page;
let financeKey: string;

beforeAll(async () => {
  writeFileSync(join(dir, 'bands.yaml'), 'global:\n  approved_day_usd: 1000\n  approved_week_usd: 5000\n  B_run_cap: 10000\n  B_unit_cap: 25\ntenants:\n  acme: {}\n');
  forge = await startForge({
    env: { ...process.env, FORGE_DATA_DIR: join(dir, 'data'), FORGE_PORT: '0', FORGE_BUDGETS_FILE: join(dir, 'bands.yaml'), FORGE_PRICING_FILE: 'config/pricing.yaml', FORGE_LOG_LEVEL: 'silent', FORGE_FLUSH_INTERVAL_MS: '10' },
    log: () => undefined,
  });
  const runner = (await forge.keys.create({ name: 'runner', roles: ['runner'], tenantId: 'acme' })).key;
  financeKey = (await forge.keys.create({ name: 'finance', roles: ['finance'], tenantId: 'acme' })).key;
  const suite = { ...SUITE, tasks: SUITE.tasks.filter((t) => IDS.includes(t.id)) };
  const engine = embeddedEvalEngine(forge, { apiKey: runner, environment: suite.environment });
  const ref = await forge.agents.put('acme', { kind: 'zip', name: 'reference-agent', bytes: packAgentDir(REFERENCE_AGENT_DIR) });
  await engine.run({ tenantId: 'acme', runId: 'ref-run', suite, agentId: ref.agent_id, publish: true });
  const crash = await forge.agents.put('acme', {
    kind: 'zip',
    name: 'crashing-agent',
    bytes: writeZip([{ name: 'forge-agent.json', data: '{"command":["node","a.mjs"]}' }, { name: 'a.mjs', data: 'console.error("boom: no model"); process.exit(2);' }]),
  });
  await engine.run({ tenantId: 'acme', runId: 'crash-run', suite, agentId: crash.agent_id });
  const userData = join(dir, 'chromium');
  mkdirSync(userData);
  ({ ctx, page } = await launchChromium(userData));
}, 120_000);

afterAll(async () => {
  await ctx?.close();
  await forge?.close();
  rmSync(dir, { recursive: true, force: true });
});

const ready = () => page.waitForFunction(() => document.body.dataset.ready === '1' || document.body.dataset.ready === 'error', undefined, { timeout: 30_000 });
const cells = (row: string) => page.locator(`${row} td`).allInnerTexts();

describe('eval pages in the browser', () => {
  it('the public leaderboard shows the published run only; with a key, the tenant board shows both, best first', async () => {
    await page.goto(`${forge.url}/eval?suite=healthcare-v1`);
    await ready();
    expect(await page.locator('#board tbody tr').count()).toBe(1);
    const pub = await cells('#board tbody tr[data-run="ref-run"]');
    expect(pub.slice(0, 5)).toEqual(['1', 'reference-agent', 'ref-run', '60.0%', '3/5']);
    expect(pub[6]).toMatch(/^\$0\.\d{4}$/);

    await page.fill('#api-key', financeKey);
    await page.click('#load');
    await ready();
    expect(await page.locator('#board tbody tr').count()).toBe(2);
    expect(await page.locator('#board tbody tr').nth(0).getAttribute('data-run')).toBe('ref-run');
    const crash = await cells('#board tbody tr[data-run="crash-run"]');
    expect(crash.slice(1, 7)).toEqual(['crashing-agent', 'crash-run', '0.0%', '0/5', '0.000', '–']);
    // Styled by the shared sheet and the eval pages' own (panels stacked with a margin, cells top-aligned).
    expect(await computedStyle(page, 'body', Object.keys(SHARED_STYLE.body))).toEqual(SHARED_STYLE.body);
    expect(await computedStyle(page, 'section h2', Object.keys(SHARED_STYLE.sectionH2))).toEqual(SHARED_STYLE.sectionH2);
    expect(await computedStyle(page, 'section', ['margin-bottom'])).toEqual({ 'margin-bottom': '16px' });
    expect(await computedStyle(page, '#board tbody td.num', ['text-align', 'vertical-align'])).toEqual({ 'text-align': 'right', 'vertical-align': 'top' });
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'eval-leaderboard.png'), fullPage: true });
  });

  it('the run view shows each task with status, score, rubric breakdown, cost components, logs and errors', async () => {
    await page.click('#board tbody tr[data-run="ref-run"] a');
    await page.waitForURL(/\/eval\/run\?tenant=acme&run=ref-run/);
    await ready();
    expect(await page.locator('#tasks tbody tr[data-task]').count()).toBe(5);
    const coding = page.locator('#tasks tbody tr[data-task="provider-02-coding"]');
    expect(await coding.locator('td.task-status').innerText()).toBe('failed');
    await coding.locator('summary').click();
    const rubric = await coding.locator('table.checks').innerText();
    expect(rubric).toMatch(/0:codes:icd10 \(critical\)\s+2\s+0\.857\s+fail\s+icd10: F1 0\.857; unexpected R07\.9/);
    const components = await coding.locator('table.components').innerText();
    expect(components).toMatch(/rli\s+\$0\.1000/);
    expect(components).toMatch(/compute\s+\$0\.\d{4}/);
    expect(await coding.locator('pre.logs').innerText()).toContain('reference agent: provider-02-coding (coding)');
    expect(await page.locator('#tasks tbody tr[data-task="payer-01-claim-adjudication"] td.task-status').innerText()).toBe('passed');

    await page.fill('#run', 'crash-run');
    await page.click('#load');
    await ready();
    const row = page.locator('#tasks tbody tr[data-task="payer-01-claim-adjudication"]');
    expect(await row.locator('td.task-status').innerText()).toBe('crash');
    await row.locator('summary').click();
    expect(await row.locator('pre.error').innerText()).toBe('exit code 2');
    expect(await row.locator('pre.logs').innerText()).toContain('! boom: no model');
    await page.screenshot({ path: join(ARTIFACTS, 'eval-run.png'), fullPage: true });
  });

  it('a key of no use shows the API error and no rows', async () => {
    await page.goto(`${forge.url}/eval/run?tenant=acme&run=ref-run`);
    await page.fill('#api-key', 'fk_nope_nope');
    await page.click('#load');
    await ready();
    expect(await page.locator('#status').innerText()).toMatch(/^FORGE_ERR_UNAUTHENTICATED: /);
  });
});

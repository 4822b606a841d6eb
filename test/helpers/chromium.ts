import { chromium, type BrowserContext, type Page } from 'playwright-core';

/** Debian's chromium, headless, in a persistent profile under `userData` (FORGE_TEST_CHROMIUM_BIN overrides the binary). */
export async function launchChromium(userData: string): Promise<{ ctx: BrowserContext; page: Page }> {
  const ctx = await chromium.launchPersistentContext(userData, {
    executablePath: process.env.FORGE_TEST_CHROMIUM_BIN ?? '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1400, height: 1100 },
  });
  return { ctx, page: ctx.pages()[0] ?? (await ctx.newPage()) };
}

/**
 * Computed style properties of the first element matching `selector`: shows the stylesheets a page links
 * (the shared ui/forge.css and the page's own rules) were served and applied, not only referenced.
 */
export function computedStyle(page: Page, selector: string, props: readonly string[]): Promise<Record<string, string>> {
  return page.locator(selector).first().evaluate((el, names) => {
    const s = getComputedStyle(el);
    return Object.fromEntries(names.map((n) => [n, s.getPropertyValue(n)]));
  }, props);
}

/** What ui/forge.css sets on every page: the body's background and font size, a panel's heading. */
export const SHARED_STYLE = { body: { 'background-color': 'rgb(246, 247, 249)', 'font-size': '14px' }, sectionH2: { 'text-transform': 'uppercase', 'letter-spacing': '0.52px' } } as const;

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

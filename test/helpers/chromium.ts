import { chromium, type BrowserContext } from 'playwright-core';

/** Debian's chromium, headless, in a throwaway profile (FORGE_TEST_CHROMIUM_BIN overrides the binary). */
export function launchChromium(userDataDir: string, viewport: { width: number; height: number }): Promise<BrowserContext> {
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.FORGE_TEST_CHROMIUM_BIN ?? '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport,
  });
}

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from '../store/index.ts';

// `forge run --suite FILE` as a user runs it: the embedded default in one process, the sample suite
// time-compressed (a task hour runs 0.2 s), the demo tenant's bands from config/pilot-budgets.yaml.
const dir = mkdtempSync(join(tmpdir(), 'forge-run-'));
const suite = join(dir, 'suite.yaml');
writeFileSync(suite, readFileSync('config/sample-suite.yaml', 'utf8').replace(/^seconds_per_hour: .*$/m, 'seconds_per_hour: 0.2'));
const env = { ...process.env, FORGE_DATA_DIR: join(dir, 'data'), FORGE_LOG_LEVEL: 'error' };

afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function forge(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, ['bin/forge.mjs', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, out, err };
}

describe('forge run --suite', () => {
  // Tasks in flight hold reservations: one denied because the rest of the band is reserved waits for them
  // to settle (retry after 1 s) instead of ending the suite, so the suite runs until the task that takes
  // the demo tenant past its 100 USD band raises the HARD_STOP.
  const summaryRe = /suite healthcare-agent-eval \(tenant demo, run pilot-1\): (\d+) tasks ran \(\d+ succeeded\), (\d+) not started, ([\d.]+) USD/;
  let firstUsd = '';

  it('runs the sample suite until the demo tenant reaches its day hard band, and stops there', async () => {
    const r = await forge('run', '--suite', suite);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/guardrail: tenant:demo NORMAL -> WARNING \(task payer-07-hcc-risk-adjustment finalized: unit_near_cap\)/);
    const m = summaryRe.exec(r.out);
    expect(m, r.out).not.toBeNull();
    const [ran, notStarted, usd] = [Number(m![1]), Number(m![2]), Number(m![3])];
    expect(ran + notStarted).toBe(40);
    expect(notStarted).toBeGreaterThan(0);
    // Past the 100 USD band by less than one task (the largest is 9.10 USD).
    expect(usd).toBeGreaterThanOrEqual(100);
    expect(usd).toBeLessThan(100 + 9.1);
    expect(r.out).toMatch(/guardrail: tenant:demo WARNING -> HARD_STOP .*day_hard/);
    expect(r.out).toMatch(/halted by tenant:demo HARD_STOP: .*day_hard/);
    expect(r.out).toContain(`tenant:demo: HARD_STOP, day ${m![3]} USD`);
    firstUsd = m![3]!;
    // The temporary runner key it used is revoked.
    const store = await openStore({ dataDir: join(dir, 'data', 'clickhouse') });
    try {
      const keys = await store.apiKeys();
      expect(keys).toHaveLength(1);
      expect(keys[0]!.revokedAt).not.toBeNull();
    } finally {
      await store.close();
    }
  }, 120_000);

  it('a second run on the same data directory starts nothing: the spend and the stop survive the restart', async () => {
    const r = await forge('run', '--suite', suite);
    expect(r.code).toBe(0);
    expect(r.out).toContain('0 tasks ran (0 succeeded), 40 not started, 0 USD');
    expect(r.out).toMatch(/halted by tenant:demo HARD_STOP/);
    expect(r.out).toContain(`tenant:demo: HARD_STOP, day ${firstUsd} USD`);
  }, 120_000);

  it('refuses bad input with exit code 2 and one line naming what to fix', async () => {
    const broken = join(dir, 'broken.yaml');
    writeFileSync(broken, readFileSync(suite, 'utf8').replace('gas_used: 0,', 'gas_used: -5,'));
    const bad = await forge('run', '--suite', broken);
    expect(bad.code).toBe(2);
    expect(bad.err.trim().split('\n')).toHaveLength(1);
    expect(bad.err).toMatch(/^forge: .*tasks\[\d+\]\.cost\.gas_used/);
    const conc = await forge('run', '--suite', suite, '--concurrency', '0');
    expect(conc).toMatchObject({ code: 2, err: 'forge: --concurrency: must be a whole number 1-256, got "0"\n' });
    const missing = await forge('run', '--suite', join(dir, 'nope.yaml'));
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/^forge: invalid suite file: cannot read .*nope\.yaml/);
  }, 60_000);

  it('forge runner refuses a missing FORGE_REDIS_URL with exit code 2 and one line', async () => {
    const r = await forge('runner');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^forge: invalid runner configuration: FORGE_REDIS_URL: [^\n]+\n$/);
  });
});

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { microsToUsd, usdToMicros } from '../rules/index.ts';
import { openStore } from '../store/index.ts';

// `forge run --suite FILE` as a user runs it: the embedded default in one process, the sample suite
// time-compressed (a task hour runs 0.2 s), the demo tenant's bands from config/pilot-budgets.yaml.
const dir = mkdtempSync(join(tmpdir(), 'forge-run-'));
const suite = join(dir, 'suite.yaml');
writeFileSync(suite, readFileSync('config/sample-suite.yaml', 'utf8').replace(/^seconds_per_hour: .*$/m, 'seconds_per_hour: 0.2'));
const env = { ...process.env, FORGE_DATA_DIR: join(dir, 'data'), FORGE_LOG_LEVEL: 'error' };

afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function forge(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return forgeWith({}, ...args);
}

async function forgeWith(extra: Record<string, string>, ...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, ['bin/forge.mjs', ...args], { env: { ...env, ...extra }, stdio: ['ignore', 'pipe', 'pipe'] });
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
  const summaryRe = /suite healthcare-agent-eval \(tenant demo, run pilot-1\): (\d+) tasks ran \(\d+ succeeded\), (\d+) not started, ([\d.]+) USD recorded\n/;
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
    expect(recordedSum(r.out)).toBe(m![3]);
    const day = /^tenant:demo: HARD_STOP, day ([\d.]+) USD$/m.exec(r.out);
    expect(day, r.out).not.toBeNull();
    // The run scope's state changes are printed too (it inherits the tenant's conditions), and its spend.
    expect(r.out).toMatch(/guardrail: run:demo\/pilot-1 NORMAL -> WARNING /);
    expect(r.out).toMatch(/guardrail: run:demo\/pilot-1 WARNING -> HARD_STOP /);
    expect(r.out).toContain(`run:demo/pilot-1: HARD_STOP, run ${day![1]} USD`);
    expect(notStartedCount(r.out)).toBe(notStarted);
    firstUsd = day![1]!;
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
    expect(r.out).toContain('0 tasks ran (0 succeeded), 40 not started, 0 USD recorded');
    // Each task that never started is reported once (not once per retry).
    expect(notStartedCount(r.out)).toBe(40);
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

/** The sum of the per-task "X USD recorded" amounts (the collector's receipts), as a USD string. */
function recordedSum(out: string): string {
  const micros = [...out.matchAll(/^task \S+: \S+.*, ([\d.]+) USD recorded$/gm)].reduce((s, m) => s + usdToMicros(m[1]!), 0);
  return microsToUsd(micros);
}

/** Tasks reported as not started: "task X: not started (...)" once per task, or "N tasks not started (...)". */
function notStartedCount(out: string): number {
  const ids = [...out.matchAll(/^task (\S+): not started /gm)].map((m) => m[1]);
  expect(new Set(ids).size, out).toBe(ids.length);
  return ids.length + [...out.matchAll(/^(\d+) tasks not started /gm)].reduce((s, m) => s + Number(m[1]), 0);
}

/** `npm start` as a user runs it: a Forge owning its data directory, with a runner key made first. */
async function startServer(dataDir: string): Promise<{ url: string; key: string; child: ChildProcess; stop(): Promise<void> }> {
  const made = await forgeWith({ FORGE_DATA_DIR: dataDir }, 'keys', 'create', '--name', 'runner', '--role', 'runner');
  expect(made.code, made.err).toBe(0);
  const child = spawn(process.execPath, ['bin/forge.mjs', 'start'], { env: { ...env, FORGE_DATA_DIR: dataDir, FORGE_PORT: '0' }, stdio: ['ignore', 'pipe', 'inherit'] });
  const rl = createInterface({ input: child.stdout! });
  const url = await new Promise<string>((resolve, reject) => {
    rl.on('line', (l) => {
      const m = /listening on (http:\/\/\S+)/.exec(l);
      if (m) resolve(m[1]!);
    });
    child.once('exit', () => reject(new Error('forge start exited before listening')));
  });
  return {
    url,
    key: made.out.trim(),
    child,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    },
  };
}

describe('forge run --api against a running Forge', () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  const serverData = join(dir, 'server-data');
  beforeAll(async () => {
    server = await startServer(serverData);
  }, 60_000);
  afterAll(async () => server?.stop());

  it('reports what the server stored (the sum of its receipts) and the server\'s state for the run', async () => {
    const r = await forgeWith({ FORGE_API_KEY: server.key }, 'run', '--suite', suite, '--api', server.url, '--run', 'api-1');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const m = /\): (\d+) tasks ran \(\d+ succeeded\), \d+ not started, ([\d.]+) USD recorded\n/.exec(r.out);
    expect(m, r.out).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(0);
    // The total is the sum of the server's receipts, task by task; the server's state for the run follows.
    expect(recordedSum(r.out)).toBe(m![2]);
    expect(r.out).toMatch(/^run:demo\/api-1: HARD_STOP, run [\d.]+ USD$/m);
    expect(r.out).not.toMatch(/NOT recorded/);
  }, 120_000);

  it('a tenant the server does not know: refused before any task runs, exit 2 with one line naming --tenant', async () => {
    const r = await forgeWith({ FORGE_API_KEY: server.key }, 'run', '--suite', suite, '--api', server.url, '--tenant', 'beta');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^forge: --tenant: \S+ does not know tenant "beta": add it to the bands file or create it \(POST \/v1\/tenants, an admin key\)\n$/);
    // Nothing ran, nothing was counted as spend.
    expect(r.out).not.toMatch(/tasks ran/);
    expect(r.out).not.toMatch(/USD recorded/);
  }, 120_000);

  it('a bad key stops at once with one line naming FORGE_API_KEY, exit 2', async () => {
    const t0 = Date.now();
    const r = await forgeWith({ FORGE_API_KEY: 'not-a-key' }, 'run', '--suite', suite, '--api', server.url);
    expect(r).toMatchObject({ code: 2, out: '' });
    expect(r.err).toMatch(/^forge: FORGE_API_KEY: refused by http:\/\/127\.0\.0\.1:\d+: [^\n]+\n$/);
    expect(Date.now() - t0).toBeLessThan(15_000);
  }, 60_000);

  it('a dead port stops at once with one line naming --api, exit 1', async () => {
    const t0 = Date.now();
    const r = await forgeWith({ FORGE_API_KEY: server.key }, 'run', '--suite', suite, '--api', 'http://127.0.0.1:9');
    expect(r).toMatchObject({ code: 1, out: '' });
    expect(r.err).toMatch(/^forge: --api http:\/\/127\.0\.0\.1:9: not reachable: [^\n]+\n$/);
    expect(Date.now() - t0).toBeLessThan(15_000);
  }, 60_000);

  it('an embedded run on the data directory the server holds says to use --api, exit 1, one line', async () => {
    const r = await forgeWith({ FORGE_DATA_DIR: serverData }, 'run', '--suite', suite);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/^forge: the data directory \S+ is in use by another process \(PID \d+\): against a running `forge start`, use --api http:\/\/127\.0\.0\.1:\d+ with FORGE_API_KEY set to a runner key[^\n]*\n$/);
    expect(r.err).not.toMatch(/DB::Exception/);
  }, 60_000);
});

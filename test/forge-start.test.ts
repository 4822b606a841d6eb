import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort } from './helpers/redis.ts';

describe('forge start, as a user runs it', () => {
  it('starts on a fresh data directory, accepts an event, answers the guardrail, stops cleanly on SIGTERM, keeps the data', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'forge-start-'));
    const port = await freePort();
    const env = { ...process.env, FORGE_DATA_DIR: dir, FORGE_PORT: String(port), FORGE_LOG_LEVEL: 'error' };
    const key = spawnSync(process.execPath, ['bin/forge.mjs', 'keys', 'create', '--name', 'ops', '--role', 'admin'], { env, encoding: 'utf8' }).stdout.trim();
    expect(key).toMatch(/^fk_[0-9a-f]{12}_/);
    const base = `http://127.0.0.1:${port}`;
    const auth = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };

    const run = async (body: (out: () => string) => Promise<void>) => {
      const child = spawn(process.execPath, ['bin/forge.mjs', 'start'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr.on('data', (b: Buffer) => (out += b.toString()));
      const deadline = Date.now() + 60_000;
      while (!out.includes('listening on')) {
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`forge start did not come up: ${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      try {
        await body(() => out);
      } finally {
        child.kill('SIGTERM');
        const [code] = (await once(child, 'exit')) as [number | null];
        expect(code).toBe(0);
        expect(out).toContain('forge: stopped');
      }
    };

    await run(async (out) => {
      expect(out()).toContain(`listening on ${base}`);
      const ev = await fetch(`${base}/v1/events`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ event_id: 'start-e1', tenant_id: 'demo', run_id: 'pilot-1', task_id: 't1', task_type: 'eval', environment: 'cpu-standard', status: 'success', finalized_at: new Date().toISOString(), rli_eval_usd: '1.25', task_hours: '0.5' }),
      });
      expect(ev.status).toBe(200);
      expect(((await ev.json()) as { accepted: Array<{ event_id: string }> }).accepted[0]!.event_id).toBe('start-e1');
      const g = (await (await fetch(`${base}/v1/guardrail/run:demo%2Fpilot-1`, { headers: auth })).json()) as { state: string; spend: { day_usd: string } };
      expect(g).toMatchObject({ state: 'NORMAL', spend: { day_usd: '1.45' } }); // 1.25 + 0.5 h x $0.40
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      // The built-in burn page is served at / and its data route answers from the same log.
      const page = await fetch(`${base}/`);
      expect(page.headers.get('content-type')).toContain('text/html');
      expect(await page.text()).toContain('<canvas');
      const burn = (await (await fetch(`${base}/v1/burn/data?tenant=demo&run=pilot-1`, { headers: auth })).json()) as { unit: { operations: number } };
      expect(burn.unit.operations).toBe(1);
      // Billing is wired in: the plans from config/plans.yaml, and the event counts as one execution.
      const plans = (await (await fetch(`${base}/v1/billing/plans`, { headers: auth })).json()) as { plans: Array<{ id: string }> };
      expect(plans.plans.map((p) => p.id)).toEqual(expect.arrayContaining(['free', 'pro', 'team', 'enterprise']));
    });
    // Same data directory: the event is still there and counted once.
    await run(async () => {
      const g = (await (await fetch(`${base}/v1/guardrail/run:demo%2Fpilot-1`, { headers: auth })).json()) as { spend: { day_usd: string } };
      expect(g.spend.day_usd).toBe('1.45');
    });
  });

  it('a start that fails half way (the port is taken) closes what it opened, says why and exits non-zero', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'forge-start-busy-'));
    const busy = createServer();
    busy.listen(0, '127.0.0.1');
    await once(busy, 'listening');
    const port = (busy.address() as { port: number }).port;
    try {
      const child = spawn(process.execPath, ['bin/forge.mjs', 'start'], { env: { ...process.env, FORGE_DATA_DIR: dir, FORGE_PORT: String(port), FORGE_LOG_LEVEL: 'error' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr.on('data', (b: Buffer) => (out += b.toString()));
      const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
      clearTimeout(killer);
      expect(signal).toBeNull(); // it exited by itself: nothing left open kept it alive
      expect(code).toBe(1);
      expect(out).toMatch(/EADDRINUSE/);
    } finally {
      busy.close();
    }
  }, 90_000);
});

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startForge, type RunningForge } from '../cli/forge-process.ts';

// `forge keys` and `forge audit head` as a user runs them, on the embedded store under FORGE_DATA_DIR.
const dir = mkdtempSync(join(tmpdir(), 'forge-cli-keys-'));
const env = { ...process.env, FORGE_DATA_DIR: join(dir, 'data'), FORGE_LOG_LEVEL: 'silent', FORGE_PORT: '0' };
let forge: RunningForge | undefined;

afterAll(async () => {
  await forge?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function cli(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, ['bin/forge.mjs', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, out, err };
}

describe('forge keys on the store', () => {
  let id = '';
  let key = '';

  it('creates a key into the store that a Forge started afterwards accepts; refuses bad names and expiries', async () => {
    const made = await cli('keys', 'create', '--name', 'ops admin', '--role', 'admin', '--expires-in', '30d');
    expect(made.err).toBe('');
    expect(made.code).toBe(0);
    key = made.out.trim();
    expect(key).toMatch(/^fk_[0-9a-f]{12}_[A-Za-z0-9_-]{32}$/);
    id = key.slice(3, 15);

    const bad = await cli('keys', 'create', '--name', 'bell\u0007', '--role', 'admin');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/^forge: --name: must not contain control characters\n$/);
    expect((await cli('keys', 'create', '--name', 'x', '--role', 'admin', '--expires-in', 'soon')).code).toBe(2);

    forge = await startForge({ env, log: () => {} });
    const r = await forge.app.inject({ method: 'GET', url: '/v1/budgets/global', headers: { authorization: `Bearer ${key}` } });
    expect(r.statusCode, r.body).toBe(200);
    expect(forge.keys.list().find((k) => k.id === id)).toMatchObject({ name: 'ops admin', expiresAt: expect.any(String) });
  }, 120_000);

  it('while that server holds the embedded store, the CLI says so in one line and exits 2', async () => {
    for (const args of [['keys', 'list'], ['audit', 'head']]) {
      const r = await cli(...args);
      expect(r.code).toBe(2);
      expect(r.err.trim().split('\n')).toHaveLength(1);
      expect(r.err).toMatch(/in use by another process .*stop it first/);
    }
    expect((await cli('keys', 'list')).err).toContain('POST /v1/keys');
    await forge!.close();
    forge = undefined;
  }, 120_000);

  it('revokes the key, records both events in the chained guardrail log, and prints the chain heads', async () => {
    const rv = await cli('keys', 'revoke', id);
    expect(rv).toMatchObject({ code: 0, out: `revoked ${id}\n` });
    expect((await cli('keys', 'revoke', id)).code).toBe(2);
    const list = await cli('keys', 'list');
    expect(list.out).toMatch(new RegExp(`^${id}  ops admin  roles=admin  tenant=\\*  expires \\S+  revoked \\S+$`, 'm'));

    const heads = await cli('audit', 'head', '--json');
    expect(heads.code).toBe(0);
    const lines = heads.out.trim().split('\n').map((l) => JSON.parse(l) as { log: string; tenant_id: string; seq: number; hash: string });
    // key_created and key_revoked, in the global stream (the key acts on every tenant).
    expect(lines).toContainEqual(expect.objectContaining({ log: 'guardrail_events', tenant_id: '', seq: 2, hash: expect.stringMatching(/^[0-9a-f]{64}$/) }));
    const plain = await cli('audit', 'head');
    expect(plain.out).toMatch(/^guardrail_events\t\*\t2\t[0-9a-f]{64}$/m);

    forge = await startForge({ env, log: () => {} });
    expect((await forge.app.inject({ method: 'GET', url: '/v1/budgets/global', headers: { authorization: `Bearer ${key}` } })).statusCode).toBe(401);
    const v = await forge.store.verify({ log: 'guardrail_events', tenantId: '' });
    expect(v).toMatchObject({ ok: true, checked: 2, pastHead: 0 });
    const events = await forge.store.guardrailEvents({ scope: { allTenants: true }, scopeKey: 'global', from: 0, to: Date.now() + 1000, kinds: ['key_created', 'key_revoked'] });
    expect(events.map((e) => e.kind)).toEqual(['key_created', 'key_revoked']);
    expect(events[0]!.actor).toMatch(/^cli \(/);
  }, 120_000);
});

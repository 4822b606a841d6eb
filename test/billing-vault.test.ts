import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Console } from 'node:console';
import { Writable } from 'node:stream';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BillingError,
  KeyVault,
  loadBillingConfig,
  masterKeys,
  MemoryVaultStore,
  open,
  seal,
  SecretString,
  type ProviderEndpoint,
} from '../billing/index.ts';

const NOW = Date.UTC(2025, 10, 15, 12);
const K1 = randomBytes(32);
const K2 = randomBytes(32);
const USER_KEY = 'sk-user-VERYSECRET-1234567890abcdef';
const AGENT_KEY = 'sk-agent-OTHERSECRET-abcdef1234567890';
const BAD_KEY = 'sk-revoked-0000000000';

/** Loopback stand-in for a provider's API: /v1/models answers 200 for known keys, 401 otherwise. */
let server: Server;
let baseUrl = '';
const seen: IncomingHttpHeaders[] = [];
beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push(req.headers);
    const auth = req.headers.authorization ?? `Bearer ${String(req.headers['x-api-key'] ?? '')}`;
    const key = auth.replace(/^Bearer /, '');
    if (req.method !== 'GET' || req.url !== '/v1/models') return void res.writeHead(404).end();
    if (key === USER_KEY || key === AGENT_KEY) return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"data":[]}');
    // a hostile provider echoing the key back must not make it leak through Forge
    res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: `invalid key ${key}` }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
});

function providers(): Record<string, ProviderEndpoint> {
  return {
    openai: { baseUrl, auth: 'bearer' },
    anthropic: { baseUrl, auth: 'x-api-key', extraHeaders: { 'anthropic-version': '2023-06-01' } },
  };
}

describe('AES-256-GCM sealing', () => {
  const keys = masterKeys('k1', K1);
  const aad = 'tenant-a/user-1/openai/*';

  it('round trip, key id travels with the ciphertext, fresh IV each time', () => {
    const a = seal(keys, USER_KEY, aad);
    const b = seal(keys, USER_KEY, aad);
    expect(a).not.toBe(b);
    expect(a.split('.')[1]).toBe('k1');
    expect(a).not.toContain(USER_KEY);
    expect(open(keys, a, aad).reveal()).toBe(USER_KEY);
  });

  it('a tampered ciphertext, tag or IV is rejected', () => {
    const s = seal(keys, USER_KEY, aad);
    const parts = s.split('.');
    for (const i of [2, 3, 4]) {
      const raw = Buffer.from(parts[i] as string, 'base64url');
      raw[0] = (raw[0] as number) ^ 0x01;
      const t = [...parts];
      t[i] = raw.toString('base64url');
      expect(() => open(keys, t.join('.'), aad)).toThrow(expect.objectContaining({ code: 'FORGE_ERR_VAULT_DECRYPT' }));
    }
  });

  it('the wrong master key, an unknown key id, or another record’s aad are rejected', () => {
    const s = seal(keys, USER_KEY, aad);
    expect(() => open(masterKeys('k1', K2), s, aad)).toThrow(expect.objectContaining({ code: 'FORGE_ERR_VAULT_DECRYPT' }));
    expect(() => open(masterKeys('k2', K2), s, aad)).toThrow(expect.objectContaining({ code: 'FORGE_ERR_VAULT_UNKNOWN_KEY_ID' }));
    expect(() => open(keys, s, 'tenant-b/user-9/openai/*')).toThrow(expect.objectContaining({ code: 'FORGE_ERR_VAULT_DECRYPT' }));
  });

  it('SecretString never prints', () => {
    const s = new SecretString(USER_KEY);
    expect(JSON.stringify({ s })).not.toContain(USER_KEY);
    expect(inspect({ s })).not.toContain(USER_KEY);
    expect(`${s}`).not.toContain(USER_KEY);
    expect(String(s)).toBe('[REDACTED]');
  });
});

describe('KeyVault', () => {
  it('validates on save with a test call to the provider; a rejected key is not stored and not echoed', async () => {
    const store = new MemoryVaultStore();
    const vault = new KeyVault(masterKeys('k1', K1), store, providers());
    const view = await vault.saveKey({ tenantId: 'tA', userId: 'u1', provider: 'openai', apiKey: USER_KEY, now: NOW });
    expect(view).toEqual({ provider: 'openai', agentId: '*', masterKeyId: 'k1', createdAt: NOW, updatedAt: NOW });
    expect(seen.at(-1)?.authorization).toBe(`Bearer ${USER_KEY}`);

    const err = await vault.saveKey({ tenantId: 'tA', userId: 'u1', provider: 'anthropic', apiKey: BAD_KEY, now: NOW }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BillingError);
    expect(err).toMatchObject({ code: 'FORGE_ERR_VAULT_KEY_REJECTED', field: 'apiKey', statusCode: 400 });
    expect(seen.at(-1)?.['x-api-key']).toBe(BAD_KEY);
    expect(JSON.stringify(err) + String(err) + inspect(err)).not.toContain(BAD_KEY);
    expect((await vault.listKeys('tA', 'u1')).map((k) => k.provider)).toEqual(['openai']);
  });

  it('an unreachable provider fails the save with its own code', async () => {
    const vault = new KeyVault(masterKeys('k1', K1), new MemoryVaultStore(), { openai: { baseUrl: 'http://127.0.0.1:1/v1', auth: 'bearer' } });
    await expect(vault.saveKey({ tenantId: 'tA', userId: 'u1', provider: 'openai', apiKey: USER_KEY, now: NOW })).rejects.toMatchObject({
      code: 'FORGE_ERR_VAULT_PROVIDER_UNREACHABLE',
    });
  });

  it('routes: agent key, else user key, else platform key counted against the tier; hybrid mode', async () => {
    const vault = new KeyVault(masterKeys('k1', K1), new MemoryVaultStore(), providers());
    await vault.saveKey({ tenantId: 'tA', userId: 'u1', provider: 'openai', apiKey: USER_KEY, now: NOW });
    await vault.saveKey({ tenantId: 'tA', userId: 'u1', provider: 'openai', agentId: 'agent-7', apiKey: AGENT_KEY, now: NOW });

    const agent = await vault.routeKey({ tenantId: 'tA', userId: 'u1', agentId: 'agent-7', model: 'gpt-4o', provider: 'openai' });
    expect(agent.source === 'byok' && agent.key.reveal()).toBe(AGENT_KEY);
    expect(agent).toMatchObject({ agentSpecific: true });
    const other = await vault.routeKey({ tenantId: 'tA', userId: 'u1', agentId: 'agent-8', model: 'gpt-4o', provider: 'openai' });
    expect(other.source === 'byok' && other.key.reveal()).toBe(USER_KEY);
    expect(await vault.routeKey({ tenantId: 'tA', userId: 'u1', model: 'claude-sonnet', provider: 'anthropic' })).toEqual({
      source: 'platform',
      provider: 'anthropic',
      model: 'claude-sonnet',
      countedAgainstTier: true,
      reason: 'no_user_key',
    });
    expect(await vault.routeKey({ tenantId: 'tB', userId: 'u1', model: 'gpt-4o', provider: 'openai' })).toMatchObject({ source: 'platform' });

    // hybrid: BYOK only for gpt-4o; gpt-4o-mini runs on the platform key
    await vault.setByokMode('tA', 'u1', { mode: 'models', models: ['gpt-4o'] });
    expect(await vault.routeKey({ tenantId: 'tA', userId: 'u1', model: 'gpt-4o', provider: 'openai' })).toMatchObject({ source: 'byok' });
    expect(await vault.routeKey({ tenantId: 'tA', userId: 'u1', model: 'gpt-4o-mini', provider: 'openai' })).toMatchObject({
      source: 'platform',
      reason: 'hybrid_platform',
    });
    await vault.setByokMode('tA', 'u1', { mode: 'off' });
    expect(await vault.routeKey({ tenantId: 'tA', userId: 'u1', model: 'gpt-4o', provider: 'openai' })).toMatchObject({ source: 'platform', reason: 'byok_off' });
  });

  it('rotation re-encrypts every key under the new master key; the old key is then no longer needed', async () => {
    const store = new MemoryVaultStore();
    const vault = new KeyVault(masterKeys('k1', K1), store, providers());
    await vault.saveKey({ tenantId: 'tA', userId: 'u1', provider: 'openai', apiKey: USER_KEY, now: NOW });
    await vault.saveKey({ tenantId: 'tA', userId: 'u2', provider: 'openai', agentId: 'a1', apiKey: AGENT_KEY, now: NOW });
    const before = (await store.all()).map((r) => r.sealed);

    expect(await vault.rotate(masterKeys('k2', K2, new Map([['k1', K1]])))).toBe(2);
    const after = await store.all();
    expect(after.every((r) => r.sealed.split('.')[1] === 'k2')).toBe(true);
    expect(after.map((r) => r.sealed)).not.toEqual(before);
    expect(await vault.rotate(masterKeys('k2', K2, new Map([['k1', K1]])))).toBe(0);

    const onlyNew = new KeyVault(masterKeys('k2', K2), store, providers());
    const r = await onlyNew.routeKey({ tenantId: 'tA', userId: 'u2', agentId: 'a1', model: 'gpt-4o', provider: 'openai' });
    expect(r.source === 'byok' && r.key.reveal()).toBe(AGENT_KEY);
    const onlyOld = new KeyVault(masterKeys('k1', K1), store, providers());
    await expect(onlyOld.routeKey({ tenantId: 'tA', userId: 'u1', model: 'gpt-4o', provider: 'openai' })).rejects.toMatchObject({
      code: 'FORGE_ERR_VAULT_UNKNOWN_KEY_ID',
    });
    expect((await vault.listKeys('tA', 'u1'))[0]?.masterKeyId).toBe('k2');
  });

  it('keys never appear in logs, serialized responses or inspected objects', async () => {
    // A logger writing to a stream, as pino or console do in production.
    const writes: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        writes.push(chunk.toString('utf8'));
        cb();
      },
    });
    const log = new Console({ stdout: sink, stderr: sink });
    const store = new MemoryVaultStore();
    const vault = new KeyVault(masterKeys('k1', K1), store, providers());
    const view = await vault.saveKey({ tenantId: 'tA', userId: 'u1', provider: 'openai', apiKey: USER_KEY, now: NOW });
    const list = await vault.listKeys('tA', 'u1');
    const routed = await vault.routeKey({ tenantId: 'tA', userId: 'u1', model: 'gpt-4o', provider: 'openai' });
    log.log('routed', routed, list, view); // what a careless log line would print
    log.error(JSON.stringify({ routed }));
    log.dir(routed, { depth: 10 });
    const serialized = [JSON.stringify(view), JSON.stringify(list), JSON.stringify(routed), inspect(routed, { depth: 10 }), inspect(vault, { depth: 10 }), JSON.stringify(await store.all())];
    expect(writes.length).toBe(3);
    const masterHex = [...K1.subarray(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    expect(inspect(vault, { depth: 10 }) + JSON.stringify(vault)).not.toContain(masterHex);
    expect(inspect(vault, { depth: 10 }) + JSON.stringify(vault)).not.toContain(K1.toString('base64'));
    for (const s of [...serialized, ...writes]) expect(s).not.toContain(USER_KEY);
    expect(writes.join('')).toContain('[REDACTED]');
    expect(routed.source === 'byok' && routed.key.reveal()).toBe(USER_KEY); // the key is there, just never printed
  });

  it('bad input names the field', async () => {
    const vault = new KeyVault(masterKeys('k1', K1), new MemoryVaultStore(), providers());
    await expect(vault.saveKey({ tenantId: 'tA', userId: 'u1', provider: 'nope', apiKey: USER_KEY, now: NOW })).rejects.toMatchObject({ field: 'provider' });
    await expect(vault.saveKey({ tenantId: 'tA', userId: 'u1', provider: 'openai', apiKey: 'short', now: NOW })).rejects.toMatchObject({ field: 'apiKey' });
  });
});

describe('billing configuration', () => {
  it('parses the master key and names the variable when it is wrong', () => {
    const cfg = loadBillingConfig({ FORGE_VAULT_MASTER_KEY: K1.toString('base64'), FORGE_VAULT_PREVIOUS_KEYS: `k0:${K2.toString('base64')}` });
    expect(cfg.vault?.keys.activeKeyId).toBe('k1');
    expect([...(cfg.vault?.keys.keys.keys() ?? [])].sort()).toEqual(['k0', 'k1']);
    expect(cfg.stripe).toBeNull();
    expect(() => loadBillingConfig({ FORGE_VAULT_MASTER_KEY: randomBytes(16).toString('base64') })).toThrow(/FORGE_VAULT_MASTER_KEY must decode to 32 bytes/);
    expect(() => loadBillingConfig({ FORGE_VAULT_MASTER_KEY: K1.toString('base64'), FORGE_VAULT_PREVIOUS_KEYS: 'k0' })).toThrow(/FORGE_VAULT_PREVIOUS_KEYS/);
    expect(() => loadBillingConfig({ STRIPE_SECRET_KEY: 'sk_test_abc' })).toThrow(/STRIPE_WEBHOOK_SECRET/);
    // A previous key under the active id would shadow it: every key sealed under it unreadable.
    expect(() => loadBillingConfig({ FORGE_VAULT_MASTER_KEY: K1.toString('base64'), FORGE_VAULT_PREVIOUS_KEYS: `k1:${K2.toString('base64')}` })).toThrow(/id k1 is the active FORGE_VAULT_MASTER_KEY_ID/);
    // Empty variables are unset ones.
    expect(loadBillingConfig({ STRIPE_SECRET_KEY: '', STRIPE_WEBHOOK_SECRET: '', FORGE_VAULT_MASTER_KEY: '' })).toMatchObject({ stripe: null, vault: null });
    expect(() => loadBillingConfig({ FORGE_STRIPE_API_BASE_URL: 'ftp://x' })).toThrow(/FORGE_STRIPE_API_BASE_URL/);
  });
});

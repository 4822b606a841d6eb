import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBillingConfig, KeyVault, MemoryVaultStore } from '../billing/index.ts';
import { HttpReceiver } from './helpers/http-receiver.ts';

// A saved BYOK key is test-called with every provider the seed price book lists, each the way that provider
// authenticates; a 401 means the key is refused and not stored.

let provider: HttpReceiver;
beforeAll(async () => {
  provider = await HttpReceiver.start();
});
afterAll(async () => {
  await provider?.close();
});

const NOW = Date.UTC(2026, 2, 2);

function vault(): KeyVault {
  const env: Record<string, string> = { FORGE_VAULT_MASTER_KEY: randomBytes(32).toString('base64') };
  for (const p of ['OPENAI', 'ANTHROPIC', 'GOOGLE', 'GROQ', 'DEEPSEEK', 'OPENROUTER', 'TOGETHER', 'OLLAMA']) env[`FORGE_BYOK_${p}_BASE_URL`] = `${provider.url}/${p.toLowerCase()}`;
  const cfg = loadBillingConfig(env).vault!;
  return new KeyVault(cfg.keys, new MemoryVaultStore(), cfg.providers);
}

describe('BYOK key validation per provider', () => {
  it.each([
    ['openai', '/openai/models', 'authorization', 'Bearer '],
    ['anthropic', '/anthropic/models', 'x-api-key', ''],
    ['google', '/google/models', 'x-goog-api-key', ''],
    ['groq', '/groq/models', 'authorization', 'Bearer '],
    ['deepseek', '/deepseek/models', 'authorization', 'Bearer '],
    ['openrouter', '/openrouter/key', 'authorization', 'Bearer '],
    ['together', '/together/models', 'authorization', 'Bearer '],
  ])('%s: GET %s with the key in %s', async (name, path, header, prefix) => {
    const v = vault();
    const key = `sk-${name}-${randomBytes(6).toString('hex')}`;
    const before = provider.requests.length;
    await v.saveKey({ tenantId: 't1', userId: 'u1', provider: name, apiKey: key, now: NOW });
    const req = provider.requests.slice(before);
    expect(req.map((r) => [r.method, r.path])).toEqual([['GET', path]]);
    expect(req[0]?.headers[header]).toBe(`${prefix}${key}`);
    expect((await v.listKeys('t1', 'u1')).map((k) => k.provider)).toEqual([name]);

    provider.failNext(1, 401);
    await expect(v.saveKey({ tenantId: 't1', userId: 'u2', provider: name, apiKey: key, now: NOW })).rejects.toMatchObject({ code: 'FORGE_ERR_VAULT_KEY_REJECTED' });
    expect(await v.listKeys('t1', 'u2')).toEqual([]);
  });

  it('ollama: a local server without keys, checked for reachability and sent no key', async () => {
    const v = vault();
    const before = provider.requests.length;
    await v.saveKey({ tenantId: 't1', userId: 'u1', provider: 'ollama', apiKey: 'local-ollama-placeholder', now: NOW });
    const req = provider.requests.slice(before);
    expect(req.map((r) => r.path)).toEqual(['/ollama/api/tags']);
    expect(req[0]?.headers.authorization).toBeUndefined();
    expect(JSON.stringify(req[0]?.headers)).not.toContain('local-ollama-placeholder');
  });
});

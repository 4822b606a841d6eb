import { createHash } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyStore } from '../api/auth.ts';
import { openStore, type Store } from '../store/index.ts';
import { freshTenant, tempDataDir } from './helpers/store-events.ts';

// API keys in the store: every KeyStore over it (one per API process) sees a key created or revoked by
// another within about a second; verify stays synchronous on each one's cache.
const tmp = tempDataDir('forge-api-keys');
let store: Store;
const open: KeyStore[] = [];

beforeAll(async () => {
  store = await openStore({ dataDir: join(tmp.dir, 'clickhouse') });
});
afterAll(async () => {
  for (const k of open) k.close();
  await store?.close();
  tmp.remove();
});

async function keyStore(opts: Parameters<typeof KeyStore.open>[1] = {}): Promise<KeyStore> {
  const ks = await KeyStore.open(store, { onError: (e) => { throw e; }, ...opts });
  open.push(ks);
  return ks;
}

/** Polls until check() holds; returns how long it took (ms). Fails past the bound. */
async function within(boundMs: number, check: () => boolean): Promise<number> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > boundMs) throw new Error(`not within ${boundMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - t0;
}

describe('KeyStore over the store', () => {
  it('a key created by one process is accepted by another within ~1.5 s, and a revocation takes effect as fast', async () => {
    const [a, b] = [await keyStore(), await keyStore()];
    const tenant = freshTenant('k');
    const made = await a.create({ name: 'runner of acme', roles: ['runner'], tenantId: tenant });
    expect(a.verify(made.key)).toMatchObject({ keyId: made.id, roles: ['runner'], tenantId: tenant });
    await within(1500, () => b.verify(made.key) !== undefined);
    expect(b.list().find((k) => k.id === made.id)).toMatchObject({ name: 'runner of acme', tenantId: tenant });
    // A wrong secret with the right id is refused.
    expect(b.verify(made.key.slice(0, -1) + (made.key.endsWith('A') ? 'B' : 'A'))).toBeUndefined();

    expect(await b.revoke(made.id, 'test')).toBe(true);
    expect(b.verify(made.key)).toBeUndefined();
    await within(1500, () => a.verify(made.key) === undefined);
    expect(await a.revoke(made.id)).toBe(false);
  });

  it('refuses an expired key, and a key that would expire in the past', async () => {
    const clock = { now: Date.now() };
    const ks = await keyStore({ now: () => clock.now });
    const made = await ks.create({ name: 'short-lived', roles: ['auditor'], tenantId: null, expiresAt: clock.now + 60_000 });
    expect(made.expiresAt).toBe(new Date(clock.now + 60_000).toISOString());
    expect(ks.verify(made.key)).toBeDefined();
    // Times round-trip through the table exactly (milliseconds).
    expect((await store.apiKeys()).find((k) => k.id === made.id)).toMatchObject({ expiresAt: clock.now + 60_000, revokedAt: null, tenantId: null, roles: ['auditor'] });
    clock.now += 60_000;
    expect(ks.verify(made.key)).toBeUndefined();
    await expect(ks.create({ name: 'x', roles: ['auditor'], tenantId: null, expiresAt: clock.now - 1 })).rejects.toMatchObject({ code: 'FORGE_ERR_VALIDATION', field: 'expires_at' });
  });

  it('refuses names with control characters, naming the field', async () => {
    const ks = await keyStore();
    for (const name of ['a\nb', 'bell\u0007', 'x\u009by', 'line\u2028sep', '']) {
      await expect(ks.create({ name, roles: ['runner'], tenantId: null })).rejects.toMatchObject({ code: 'FORGE_ERR_VALIDATION', field: 'name' });
    }
  });

  it('records creation and revocation in guardrail_events (never the secret), and that chain verifies', async () => {
    const ks = await keyStore();
    const tenant = freshTenant('k');
    const t0 = Date.now();
    const made = await ks.create({ name: 'audited', roles: ['finance'], tenantId: tenant, actor: 'ops-ann' });
    await ks.revoke(made.id, 'ops-bob');
    const rows = await store.guardrailEvents({ scope: { tenantId: tenant }, from: t0 - 1000, to: Date.now() + 1000, kinds: ['key_created', 'key_revoked'] });
    expect(rows.map((r) => [r.kind, r.scope, r.actor])).toEqual([
      ['key_created', `tenant:${tenant}`, 'ops-ann'],
      ['key_revoked', `tenant:${tenant}`, 'ops-bob'],
    ]);
    const secret = made.key.split('_')[2]!;
    const text = JSON.stringify(rows);
    expect(text).not.toContain(secret);
    expect(text).not.toContain(createHash('sha256').update(secret).digest('hex'));
    expect(await store.verify({ log: 'guardrail_events', tenantId: tenant })).toMatchObject({ ok: true, checked: 2 });
    // A key for every tenant is recorded in the global stream.
    await ks.create({ name: 'global', roles: ['admin'], tenantId: null });
    expect((await store.verify({ log: 'guardrail_events', tenantId: '' })).ok).toBe(true);
  });

  it('imports a keys.json of the file-based store once, then renames it', async () => {
    const file = join(tmp.dir, 'keys.json');
    const secret = 'A'.repeat(32);
    const fileKeys = [
      { id: 'abcdef012345', name: 'old admin', roles: ['admin'], tenantId: null, hash: createHash('sha256').update(secret).digest('hex'), createdAt: '2026-01-01T00:00:00.000Z' },
      { id: '0123456789ab', name: 'old revoked', roles: ['runner'], tenantId: 'acme', hash: createHash('sha256').update('B'.repeat(32)).digest('hex'), createdAt: '2026-01-01T00:00:00.000Z', revokedAt: '2026-01-02T00:00:00.000Z' },
    ];
    writeFileSync(file, JSON.stringify(fileKeys));
    const ks = await keyStore({ importFile: file });
    expect(existsSync(file)).toBe(false);
    expect(existsSync(`${file}.imported`)).toBe(true);
    expect(ks.verify(`fk_abcdef012345_${secret}`)).toMatchObject({ name: 'old admin', roles: ['admin'], tenantId: null });
    expect(ks.verify(`fk_0123456789ab_${'B'.repeat(32)}`)).toBeUndefined();
    expect(ks.list().find((k) => k.id === '0123456789ab')).toMatchObject({ revokedAt: '2026-01-02T00:00:00.000Z' });
    // Another process opening later finds them in the table (nothing imported twice).
    const other = await keyStore({ importFile: file });
    expect(other.verify(`fk_abcdef012345_${secret}`)).toBeDefined();
    expect((await store.apiKeys()).filter((k) => k.id === 'abcdef012345')).toHaveLength(1);
  });
});

describe('KeyStore.inMemory (unit tests without a store)', () => {
  it('creates, verifies and revokes keys in memory', async () => {
    const ks = KeyStore.inMemory();
    const made = ks.createNow({ name: 'unit', roles: ['runner'], tenantId: null });
    expect(ks.verify(made.key)).toMatchObject({ name: 'unit' });
    expect(await ks.revoke(made.id)).toBe(true);
    expect(ks.verify(made.key)).toBeUndefined();
    expect(ks.events.map((e) => e.kind)).toEqual(['key_created', 'key_revoked']);
  });
});

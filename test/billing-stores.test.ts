import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { createChdbConnection } from 'chdb/connection';
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ClickHouseAccountStore,
  ClickHouseVaultStore,
  KeyVault,
  loadPlans,
  masterKeys,
  MemoryAccountStore,
  MemoryVaultStore,
  migrateBilling,
  newAccount,
  StripeBilling,
  type AccountStore,
  type VaultStore,
} from '../billing/index.ts';

const NOW = Date.UTC(2025, 10, 15, 12);
const catalog = loadPlans('config/plans.yaml');
let dir = '';
let client: ClickHouseClient;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'forge-billing-stores-'));
  client = createClient({ connection: createChdbConnection({ path: dir }) } as unknown as Parameters<typeof createClient>[0]);
});
afterAll(async () => {
  await client?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function freshDb(): Promise<string> {
  const db = `bs_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  await migrateBilling(client, db);
  return db;
}

function accountSuite(name: string, make: () => Promise<() => AccountStore>) {
  describe(`account store (${name})`, () => {
    it('keeps the latest version of an account, finds it by customer, remembers webhook events', async () => {
      const open = await make();
      const s = open();
      expect(await s.get('tA')).toBeUndefined();
      await s.put({ ...newAccount('tA', NOW), customerId: 'cus_1' });
      await s.put({ ...newAccount('tA', NOW), customerId: 'cus_1', planId: 'team', seats: 4, status: 'active', subscriptionId: 'sub_1', lastStripeEventAt: 77, updatedAt: NOW + 1 });
      await s.put({ ...newAccount('tB', NOW) });
      const again = open(); // a restart
      expect(await again.get('tA')).toEqual({
        tenantId: 'tA',
        planId: 'team',
        byok: false,
        seats: 4,
        status: 'active',
        overageOptIn: false,
        customerId: 'cus_1',
        subscriptionId: 'sub_1',
        lastStripeEventAt: 77,
        updatedAt: NOW + 1,
      });
      expect((await again.byCustomer('cus_1'))?.tenantId).toBe('tA');
      expect(await again.byCustomer('cus_2')).toBeUndefined();
      expect((await again.list()).map((a) => a.tenantId)).toEqual(['tA', 'tB']);
      expect(await again.hasEvent('evt_1')).toBe(false);
      await again.markEvent('evt_1');
      expect(await open().hasEvent('evt_1')).toBe(true);
    });
  });
}

function vaultSuite(name: string, make: () => Promise<{ open: () => VaultStore; raw: () => Promise<string> }>) {
  describe(`vault store (${name})`, () => {
    it('keys survive a restart sealed; rotation and deletion persist; the plain key is never stored', async () => {
      const { open, raw } = await make();
      const k1 = randomBytes(32);
      const k2 = randomBytes(32);
      const okFetch = (async () => new Response('{}', { status: 200 })) as typeof fetch;
      const providers = { openai: { baseUrl: 'http://provider.invalid/v1', auth: 'bearer' as const } };
      const v1 = new KeyVault(masterKeys('k1', k1), open(), providers, { fetch: okFetch });
      const KEY = 'sk-persisted-SECRET-0123456789';
      await v1.saveKey({ tenantId: 'tA', userId: 'u1', provider: 'openai', apiKey: KEY, now: NOW });
      await v1.saveKey({ tenantId: 'tA', userId: 'u1', provider: 'openai', agentId: 'a1', apiKey: KEY + 'x', now: NOW });
      await v1.setByokMode('tA', 'u1', { mode: 'models', models: ['gpt-4o'] });
      expect(await raw()).not.toContain(KEY);

      const v2 = new KeyVault(masterKeys('k1', k1), open(), providers, { fetch: okFetch });
      const r = await v2.routeKey({ tenantId: 'tA', userId: 'u1', model: 'gpt-4o', provider: 'openai' });
      expect(r.source === 'byok' && r.key.reveal()).toBe(KEY);
      expect(await v2.routeKey({ tenantId: 'tA', userId: 'u1', model: 'gpt-4o-mini', provider: 'openai' })).toMatchObject({ reason: 'hybrid_platform' });

      expect(await v2.rotate(masterKeys('k2', k2, new Map([['k1', k1]])))).toBe(2);
      const v3 = new KeyVault(masterKeys('k2', k2), open(), providers, { fetch: okFetch });
      expect((await v3.listKeys('tA', 'u1')).map((k) => k.masterKeyId)).toEqual(['k2', 'k2']);
      expect(await v3.deleteKey('tA', 'u1', 'openai', 'a1')).toBe(true);
      expect(await v3.deleteKey('tA', 'u1', 'openai', 'a1')).toBe(false);
      expect((await v3.listKeys('tA', 'u1')).map((k) => k.agentId)).toEqual(['*']);
      expect(await raw()).not.toContain(KEY);
    });
  });
}

accountSuite('memory', async () => {
  const s = new MemoryAccountStore();
  return () => s;
});
accountSuite('ClickHouse (embedded chdb)', async () => {
  const db = await freshDb();
  return () => new ClickHouseAccountStore(client, db);
});
vaultSuite('memory', async () => {
  const s = new MemoryVaultStore();
  return { open: () => s, raw: async () => JSON.stringify(await s.all()) };
});
vaultSuite('ClickHouse (embedded chdb)', async () => {
  const db = await freshDb();
  return {
    open: () => new ClickHouseVaultStore(client, db),
    raw: async () => {
      const rs = await client.query({ query: `SELECT * FROM ${db}.byok_keys`, format: 'JSONEachRow' });
      return JSON.stringify(await rs.json());
    },
  };
});

describe('webhooks over the ClickHouse account store', () => {
  it('a plan change from a signed webhook survives a restart; a redelivery is ignored after it', async () => {
    const db = await freshDb();
    const secret = 'whsec_storetest';
    const mk = () => new StripeBilling({ secretKey: 'sk_test_x', webhookSecret: secret, meterEventName: 'forge_executions', apiBaseUrl: 'http://127.0.0.1:1' }, catalog, new ClickHouseAccountStore(client, db));
    await new ClickHouseAccountStore(client, db).put({ ...newAccount('tA', NOW), planId: 'pro', status: 'active', customerId: 'cus_9', subscriptionId: 'sub_9' });
    const payload = JSON.stringify({
      id: 'evt_up',
      object: 'event',
      type: 'customer.subscription.updated',
      created: 5,
      data: { object: { id: 'sub_9', customer: 'cus_9', status: 'past_due', items: { data: [{ price: { id: 'price_team_seat_monthly' }, quantity: 2 }] } } },
    });
    const header = new Stripe('sk_test_signer').webhooks.generateTestHeaderString({ payload, secret, timestamp: Math.floor(NOW / 1000) });
    expect(await mk().handleWebhook(payload, header, NOW)).toMatchObject({ handled: true, planId: 'team', status: 'past_due' });
    expect(await mk().handleWebhook(payload, header, NOW)).toMatchObject({ handled: false, reason: 'duplicate' });
    expect(await new ClickHouseAccountStore(client, db).get('tA')).toMatchObject({ planId: 'team', seats: 2, status: 'past_due' });
  });
});

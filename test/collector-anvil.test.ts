import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseGwei } from 'viem';
import { chainFromPricing, chainlinkNativePrice, viemChain, type ChainReader } from '../collector/index.ts';
import { gasCostFromWei } from '../rules/index.ts';
import { deployPriceFeed, priceFeedRuntime, startAnvil, type Anvil } from './helpers/anvil.ts';
import { freePort } from './helpers/redis.ts';
import { buildCollectorApp, freshTenant, MemorySink, rawEvent, testPricing, type TestApp } from './collector-fixtures.ts';

// A real anvil node: a real transaction's receipt prices the gas, a hand-assembled AggregatorV3 feed on
// the same node serves the native USD price (read through viem).
let anvil: Anvil;
let feed: `0x${string}`;
let chain: ChainReader;
let t: TestApp;
const sink = new MemorySink();
const FEED_ANSWER = 250_012_345_678n; // 2500.12345678 USD with 8 decimals
const FEED_USD = '2500.12345678';

beforeAll(async () => {
  anvil = await startAnvil();
  feed = await deployPriceFeed(anvil, { answer: FEED_ANSWER, decimals: 8 });
  chain = viemChain(anvil.url);
  const pricing = testPricing(
    `compute: { environments: { gpu-a10: "1.60" } }
storage: { gb_stored: "0", gb_month_usd: "0", expected_tasks_day: 1 }
native_price: { source: chainlink, feed_address: "${feed}", max_age_seconds: 60 }
chain: { rpc_url: "${anvil.url}" }
`,
  );
  t = await buildCollectorApp({ sink, pricing, chain });
});

afterAll(async () => {
  await t?.app.close();
  await anvil?.stop();
});

function gasEvent(tenant: string, gas: Record<string, unknown>) {
  return rawEvent(tenant, { gas, llm: undefined, rli_eval_usd: '0', task_hours: '0', finalized_at: Date.now() });
}

async function post(body: unknown) {
  return t.app.inject({ method: 'POST', url: '/v1/events', payload: body as Record<string, unknown> });
}

describe('collector against a real EVM node (anvil)', () => {
  it('reads the native USD price from the AggregatorV3 feed through viem', async () => {
    const src = chainlinkNativePrice(chain.client, feed, { maxAgeMs: 60_000, maxStalenessMs: 3_600_000 });
    expect(await src.usd()).toBe(FEED_USD);
  });

  it('caches the feed price for max_age, then reads the new answer; refuses a stale round', async () => {
    const own = await deployPriceFeed(anvil, { answer: 180_000_000_000n, decimals: 8 });
    let clock = Date.now();
    const src = chainlinkNativePrice(chain.client, own, { maxAgeMs: 60_000, now: () => clock });
    expect(await src.usd()).toBe('1800');
    await anvil.test.setCode({ address: own, bytecode: priceFeedRuntime({ answer: 2_000_000n, decimals: 3 }) });
    expect(await src.usd()).toBe('1800'); // still cached
    clock += 60_001;
    expect(await src.usd()).toBe('2000');
    const stale = chainlinkNativePrice(chain.client, own, { maxAgeMs: 1, maxStalenessMs: 60_000, now: () => Date.now() + 3_600_000 });
    await expect(stale.usd()).rejects.toMatchObject({ code: 'FORGE_ERR_PRICE_UNAVAILABLE' });
  });

  it('answers 503 (retryable) when the chain RPC is unreachable, and stores nothing', async () => {
    const dead = viemChain(`http://127.0.0.1:${await freePort()}`, { retryCount: 0, timeoutMs: 2000 });
    const sink2 = new MemorySink();
    const t2 = await buildCollectorApp({ sink: sink2, chain: dead, nativePrice: { usd: () => Promise.resolve('1'), description: 'test' } });
    try {
      const tenant = freshTenant();
      t2.tenants.add(tenant);
      const res = await t2.app.inject({ method: 'POST', url: '/v1/events', payload: gasEvent(tenant, { tx_hash: `0x${'cd'.repeat(32)}`, chain_id: 1 }) });
      expect(res.statusCode).toBe(503);
      expect(res.json().error.code).toBe('FORGE_ERR_CHAIN_UNAVAILABLE');
      expect(sink2.rows.size).toBe(0);
    } finally {
      await t2.app.close();
    }
  });

  it('prices a mined transaction as receipt gasUsed x effectiveGasPrice x feed price', async () => {
    const tenant = freshTenant();
    t.tenants.add(tenant);
    const hash = await anvil.wallet.sendTransaction({ account: anvil.accounts[0]!, chain: anvil.wallet.chain, to: anvil.accounts[1]!, value: 12345n });
    const receipt = await anvil.public.waitForTransactionReceipt({ hash });
    const ev = gasEvent(tenant, { tx_hash: hash, chain_id: anvil.chainId });
    const res = await post(ev);
    expect(res.statusCode, res.body).toBe(200);
    const row = sink.rows.get(ev.event_id as string)!;
    const expected = gasCostFromWei(receipt.gasUsed, receipt.effectiveGasPrice, FEED_USD);
    expect(expected).toBeGreaterThan(0);
    expect(row.gasMicros).toBe(expected);
    expect(row.totalMicros).toBe(expected);
    expect(row.gasSource).toBe('receipt');
    expect(row.gasUsed).toBe(receipt.gasUsed.toString());
    expect(row.nativeUsd).toBe(FEED_USD);
    expect(row.txHash).toBe(hash.toLowerCase());
    expect(row.chainId).toBe(anvil.chainId);
  });

  it('records a reverted transaction as reverted, with the gas it paid', async () => {
    const tenant = freshTenant();
    t.tenants.add(tenant);
    // The feed reverts on an unknown selector; an explicit gas limit skips estimation (which would fail).
    const hash = await anvil.wallet.sendTransaction({ account: anvil.accounts[0]!, chain: anvil.wallet.chain, to: feed, data: '0xdeadbeef', gas: 100_000n });
    const receipt = await anvil.public.waitForTransactionReceipt({ hash });
    expect(receipt.status).toBe('reverted');
    const ev = gasEvent(tenant, { tx_hash: hash, chain_id: anvil.chainId });
    const res = await post(ev);
    expect(res.statusCode, res.body).toBe(200);
    const row = sink.rows.get(ev.event_id as string)!;
    expect(row.gasSource).toBe('reverted');
    expect(row.gasMicros).toBe(gasCostFromWei(receipt.gasUsed, receipt.effectiveGasPrice, FEED_USD));
  });

  it('records pending and replaced transactions as such, and refuses an unknown hash', async () => {
    const tenant = freshTenant();
    t.tenants.add(tenant);
    const from = anvil.accounts[2]!;
    await anvil.test.setAutomine(false);
    try {
      const nonce = await anvil.public.getTransactionCount({ address: from, blockTag: 'pending' });
      const fees = { maxFeePerGas: parseGwei('10'), maxPriorityFeePerGas: parseGwei('1') };
      const first = await anvil.wallet.sendTransaction({ account: from, chain: anvil.wallet.chain, to: anvil.accounts[3]!, value: 1n, nonce, ...fees });

      const pending = gasEvent(tenant, { tx_hash: first, chain_id: anvil.chainId });
      expect((await post(pending)).statusCode).toBe(200);
      expect(sink.rows.get(pending.event_id as string)).toMatchObject({ gasSource: 'pending', gasMicros: 0, gasUsed: '0' });

      // Same nonce, higher fees: the node drops the first transaction for the second.
      const second = await anvil.wallet.sendTransaction({
        account: from,
        chain: anvil.wallet.chain,
        to: anvil.accounts[3]!,
        value: 2n,
        nonce,
        maxFeePerGas: parseGwei('30'),
        maxPriorityFeePerGas: parseGwei('5'),
      });
      await anvil.test.mine({ blocks: 1 });
      expect((await anvil.public.getTransactionReceipt({ hash: second })).status).toBe('success');

      const replaced = gasEvent(tenant, { tx_hash: first, chain_id: anvil.chainId, from, nonce });
      const res = await post(replaced);
      expect(res.statusCode, res.body).toBe(200);
      expect(sink.rows.get(replaced.event_id as string)).toMatchObject({ gasSource: 'replaced', gasMicros: 0 });

      const unknown = gasEvent(tenant, { tx_hash: first, chain_id: anvil.chainId });
      const r2 = await post(unknown);
      expect(r2.statusCode).toBe(400);
      expect(r2.json().error).toMatchObject({ code: 'FORGE_ERR_VALIDATION', field: 'gas.tx_hash' });
      expect(sink.rows.has(unknown.event_id as string)).toBe(false);
    } finally {
      await anvil.test.setAutomine(true);
    }
  });

  it('a node on another chain than pricing config chain.chain_id is refused (503, config problem)', async () => {
    const wrong = chainFromPricing({ chain: { rpcUrl: anvil.url, chainId: 1 } })!;
    await expect(wrong.chainId()).rejects.toMatchObject({ code: 'FORGE_ERR_CHAIN_UNAVAILABLE' });
    expect(await chainFromPricing({ chain: { rpcUrl: anvil.url, chainId: anvil.chainId } })!.chainId()).toBe(anvil.chainId);
  });

  it('refuses an event for another chain than the configured node', async () => {
    const tenant = freshTenant();
    t.tenants.add(tenant);
    const ev = gasEvent(tenant, { tx_hash: `0x${'ab'.repeat(32)}`, chain_id: anvil.chainId + 1 });
    const res = await post(ev);
    expect(res.statusCode).toBe(400);
    expect(res.json().error.field).toBe('gas.chain_id');
    expect(sink.rows.has(ev.event_id as string)).toBe(false);
  });
});

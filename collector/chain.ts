import {
  createPublicClient,
  http,
  webSocket,
  TransactionNotFoundError,
  TransactionReceiptNotFoundError,
  type PublicClient,
} from 'viem';
import { Dec } from '../rules/index.ts';
import { UnavailableError } from './errors.ts';
import type { NativePriceConfig } from './pricing.ts';

/** What the chain says about a transaction. Amounts in wei / gas units. */
export type TxGas =
  /** Mined: receipt gasUsed x effectiveGasPrice. `reverted` still paid its gas. */
  | { status: 'receipt' | 'reverted'; gasUsed: bigint; effectiveGasPriceWei: bigint; blockNumber: bigint }
  /** Known to the node but not mined yet. */
  | { status: 'pending' }
  /** Its nonce was used by another transaction: it will never be mined. */
  | { status: 'replaced' }
  /** The node does not know the hash (and no from/nonce was given to tell a replacement). */
  | { status: 'not_found' };

/** The chain access the collector needs; `viemChain` implements it over JSON-RPC. */
export interface ChainReader {
  /** eth_chainId of the node (cached after the first call). */
  chainId(): Promise<number>;
  /** Looks a transaction up; `hint` (sender and nonce, from the event) lets a dropped replacement be told apart. */
  txGas(hash: `0x${string}`, hint?: { from: `0x${string}`; nonce: number }): Promise<TxGas>;
  /** The viem client, for price feeds on the same node. */
  readonly client: PublicClient;
}

/** A viem public client over the configured RPC URL (http(s) or ws(s)). */
export function viemChain(rpcUrl: string, opts: { timeoutMs?: number; retryCount?: number; expectChainId?: number } = {}): ChainReader {
  const transport = /^wss?:/.test(rpcUrl)
    ? webSocket(rpcUrl, { timeout: opts.timeoutMs ?? 10_000, retryCount: opts.retryCount ?? 2 })
    : http(rpcUrl, { timeout: opts.timeoutMs ?? 10_000, retryCount: opts.retryCount ?? 2 });
  const client = createPublicClient({ transport }) as PublicClient;
  let chainId: Promise<number> | undefined;
  const unavailable = (what: string, e: unknown): never => {
    throw new UnavailableError('FORGE_ERR_CHAIN_UNAVAILABLE', `chain RPC failed (${what}): ${(e as Error).message.split('\n')[0]}`, { cause: e });
  };
  return {
    client,
    chainId() {
      chainId ??= client.getChainId().then(
        (id) => {
          if (opts.expectChainId !== undefined && id !== opts.expectChainId) {
            chainId = undefined;
            throw new UnavailableError('FORGE_ERR_CHAIN_UNAVAILABLE', `the RPC node is on chain ${id}, but pricing config chain.chain_id is ${opts.expectChainId}`);
          }
          return id;
        },
        (e: unknown) => {
          chainId = undefined; // retry on the next call
          return unavailable('eth_chainId', e);
        },
      );
      return chainId;
    },
    async txGas(hash, hint) {
      try {
        const r = await client.getTransactionReceipt({ hash });
        return {
          status: r.status === 'success' ? 'receipt' : 'reverted',
          gasUsed: r.gasUsed,
          effectiveGasPriceWei: r.effectiveGasPrice,
          blockNumber: r.blockNumber,
        };
      } catch (e) {
        if (!(e instanceof TransactionReceiptNotFoundError)) unavailable('eth_getTransactionReceipt', e);
      }
      // No receipt: pending in the mempool, replaced (its nonce was mined by another tx), or unknown.
      let from = hint?.from;
      let nonce = hint?.nonce;
      let known = false;
      try {
        const tx = await client.getTransaction({ hash });
        known = true;
        from = tx.from;
        nonce = tx.nonce;
      } catch (e) {
        if (!(e instanceof TransactionNotFoundError)) unavailable('eth_getTransactionByHash', e);
      }
      if (from !== undefined && nonce !== undefined) {
        let mined: number;
        try {
          mined = await client.getTransactionCount({ address: from, blockTag: 'latest' });
        } catch (e) {
          return unavailable('eth_getTransactionCount', e);
        }
        if (mined > nonce) {
          // The nonce is used. If our hash had been mined we would have found its receipt above; re-check
          // once in case it was mined between the two calls.
          try {
            const r = await client.getTransactionReceipt({ hash });
            return { status: r.status === 'success' ? 'receipt' : 'reverted', gasUsed: r.gasUsed, effectiveGasPriceWei: r.effectiveGasPrice, blockNumber: r.blockNumber };
          } catch (e) {
            if (!(e instanceof TransactionReceiptNotFoundError)) unavailable('eth_getTransactionReceipt', e);
          }
          return { status: 'replaced' };
        }
      }
      return known ? { status: 'pending' } : { status: 'not_found' };
    },
  };
}

/** P_native_usd: USD per native token, as a decimal string. */
export interface NativePriceSource {
  usd(): Promise<string>;
  readonly description: string;
}

export function fixedNativePrice(usd: string): NativePriceSource {
  return { usd: () => Promise.resolve(usd), description: `fixed ${usd} USD` };
}

/** The two AggregatorV3Interface functions Forge reads. */
export const aggregatorV3Abi = [
  {
    type: 'function',
    name: 'latestRoundData',
    stateMutability: 'view',
    inputs: [],
    outputs: [
      { name: 'roundId', type: 'uint80' },
      { name: 'answer', type: 'int256' },
      { name: 'startedAt', type: 'uint256' },
      { name: 'updatedAt', type: 'uint256' },
      { name: 'answeredInRound', type: 'uint80' },
    ],
  },
  { type: 'function', name: 'decimals', stateMutability: 'view', inputs: [], outputs: [{ name: '', type: 'uint8' }] },
] as const;

/**
 * A Chainlink-style AggregatorV3 feed read through viem: price = answer / 10^decimals. The value is cached
 * for maxAgeMs; concurrent callers share one read. A failed read with no fresh cache is a 503 (retryable).
 */
export function chainlinkNativePrice(
  client: PublicClient,
  feed: `0x${string}`,
  opts: { maxAgeMs: number; maxStalenessMs?: number; now?: () => number },
): NativePriceSource {
  const now = opts.now ?? Date.now;
  let cached: { usd: string; at: number } | undefined;
  let inflight: Promise<string> | undefined;
  const read = async (): Promise<string> => {
    try {
      // decimals is read with every refresh (one cheap call per max age), so a feed upgrade cannot mis-scale.
      const [decimals, [, answer, , updatedAt]] = await Promise.all([
        client.readContract({ address: feed, abi: aggregatorV3Abi, functionName: 'decimals' }),
        client.readContract({ address: feed, abi: aggregatorV3Abi, functionName: 'latestRoundData' }),
      ]);
      if (answer <= 0n) throw new Error(`feed answer ${answer} is not a positive price`);
      if (opts.maxStalenessMs !== undefined && Number(updatedAt) * 1000 < now() - opts.maxStalenessMs) {
        throw new Error(`feed round updated at ${new Date(Number(updatedAt) * 1000).toISOString()} is older than ${opts.maxStalenessMs / 1000}s`);
      }
      const usd = new Dec(answer.toString()).dividedBy(new Dec(10).pow(decimals)).toFixed();
      cached = { usd, at: now() };
      return usd;
    } catch (e) {
      throw new UnavailableError('FORGE_ERR_PRICE_UNAVAILABLE', `native price feed ${feed}: ${(e as Error).message.split('\n')[0]}`, { cause: e });
    }
  };
  return {
    description: `chainlink feed ${feed} (cache ${opts.maxAgeMs / 1000}s)`,
    usd() {
      if (cached && now() - cached.at < opts.maxAgeMs) return Promise.resolve(cached.usd);
      inflight ??= read().finally(() => {
        inflight = undefined;
      });
      return inflight;
    },
  };
}

/** The configured native price source; a chainlink feed needs the chain's client. */
export function nativePriceFrom(cfg: NativePriceConfig, chain: ChainReader | undefined): NativePriceSource {
  if (cfg.source === 'fixed') return fixedNativePrice(cfg.usd);
  if (!chain) throw new UnavailableError('FORGE_ERR_PRICE_UNAVAILABLE', 'a chainlink native price needs a chain RPC URL');
  return chainlinkNativePrice(chain.client, cfg.feedAddress, { maxAgeMs: cfg.maxAgeMs, ...(cfg.maxStalenessMs !== undefined ? { maxStalenessMs: cfg.maxStalenessMs } : {}) });
}

/** The chain reader the pricing config names (chain.rpc_url or FORGE_RPC_URL), or undefined when none. */
export function chainFromPricing(p: { chain?: { rpcUrl: string; chainId?: number } }): ChainReader | undefined {
  return p.chain ? viemChain(p.chain.rpcUrl, p.chain.chainId !== undefined ? { expectChainId: p.chain.chainId } : {}) : undefined;
}

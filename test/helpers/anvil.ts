import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import {
  createPublicClient,
  createTestClient,
  createWalletClient,
  defineChain,
  http,
  type Hex,
  type PublicClient,
  type TestClient,
  type WalletClient,
} from 'viem';
import { freePort } from './redis.ts';

/**
 * A real local EVM node: npm @foundry-rs/anvil on a free loopback port (`--silent`), with viem clients.
 * Anvil's dev accounts are unlocked, so `wallet.sendTransaction({ account })` signs on the node.
 */
export interface Anvil {
  readonly url: string;
  readonly chainId: number;
  readonly public: PublicClient;
  readonly wallet: WalletClient;
  readonly test: TestClient;
  /** Dev accounts (funded, unlocked). */
  readonly accounts: readonly `0x${string}`[];
  stop(): Promise<void>;
}

const ANVIL_BIN = process.env.FORGE_TEST_ANVIL_BIN ?? join(import.meta.dirname, '..', '..', 'node_modules', '.bin', 'anvil');

export async function startAnvil(): Promise<Anvil> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(ANVIL_BIN, ['--port', String(port), '--host', '127.0.0.1', '--silent'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 20_000;
  let chainId = 0;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`anvil exited with ${child.exitCode}: ${err}`);
    try {
      const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }) });
      chainId = Number(((await r.json()) as { result: string }).result);
      break;
    } catch {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`anvil on ${port} did not start: ${err}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const chain = defineChain({ id: chainId, name: 'anvil', nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 }, rpcUrls: { default: { http: [url] } } });
  const pub = createPublicClient({ chain, transport: http(url) }) as PublicClient;
  const wallet = createWalletClient({ chain, transport: http(url) });
  const test = createTestClient({ chain, mode: 'anvil', transport: http(url) });
  const accounts = await wallet.requestAddresses();
  return {
    url,
    chainId,
    public: pub,
    wallet,
    test,
    accounts,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

/**
 * A Chainlink-style AggregatorV3 price feed as hand-assembled EVM bytecode (no compiler needed).
 * The runtime dispatches on the 4-byte selector:
 *   latestRoundData() 0xfeaf968c -> (roundId, answer, startedAt = TIMESTAMP, updatedAt = TIMESTAMP, answeredInRound = roundId)
 *   decimals()        0x313ce567 -> decimals
 *   anything else    -> revert (so a plain call or transfer to it reverts: handy for a reverted tx)
 * answer, decimals and roundId are constants baked into the runtime at deploy time.
 *
 *   PUSH1 0 CALLDATALOAD PUSH1 0xe0 SHR              selector = calldata[0:4]
 *   DUP1 PUSH4 feaf968c EQ PUSH2 <round> JUMPI
 *   DUP1 PUSH4 313ce567 EQ PUSH2 <dec> JUMPI
 *   PUSH1 0 DUP1 REVERT                              (32 bytes so far)
 *   round: JUMPDEST PUSH32 roundId PUSH1 0 MSTORE PUSH32 answer PUSH1 0x20 MSTORE
 *          TIMESTAMP PUSH1 0x40 MSTORE TIMESTAMP PUSH1 0x60 MSTORE PUSH32 roundId PUSH1 0x80 MSTORE
 *          PUSH1 0xa0 PUSH1 0 RETURN
 *   dec:   JUMPDEST PUSH1 decimals PUSH1 0 MSTORE PUSH1 0x20 PUSH1 0 RETURN
 * The init code copies the runtime to memory and returns it: PUSH2 len PUSH2 15 PUSH1 0 CODECOPY PUSH2 len PUSH1 0 RETURN.
 */
export function priceFeedInitCode(p: { answer: bigint; decimals: number; roundId?: bigint }): Hex {
  const word = (v: bigint): string => {
    const x = BigInt.asUintN(256, v); // int256 answer in two's complement
    return x.toString(16).padStart(64, '0');
  };
  const b = (n: number, bytes: number): string => n.toString(16).padStart(bytes * 2, '0');
  const roundId = p.roundId ?? 1n;
  const head = (round: number, dec: number): string =>
    '600035' + '60e01c' + '80' + '63feaf968c' + '14' + '61' + b(round, 2) + '57' + '80' + '63313ce567' + '14' + '61' + b(dec, 2) + '57' + '600080fd';
  const headLen = head(0, 0).length / 2; // 32
  const round =
    '5b' + '7f' + word(roundId) + '600052' + '7f' + word(p.answer) + '602052' + '42' + '604052' + '42' + '606052' + '7f' + word(roundId) + '608052' + '60a06000f3';
  const dec = '5b' + '60' + b(p.decimals, 1) + '600052' + '60206000f3';
  const runtime = head(headLen, headLen + round.length / 2) + round + dec;
  const len = runtime.length / 2;
  const init = '61' + b(len, 2) + '61' + b(15, 2) + '600039' + '61' + b(len, 2) + '6000f3';
  if (init.length / 2 !== 15) throw new Error('init code length changed');
  return `0x${init}${runtime}`;
}

/** The feed's runtime code alone (for anvil_setCode: change the answer at the same address). */
export function priceFeedRuntime(p: { answer: bigint; decimals: number; roundId?: bigint }): Hex {
  return `0x${priceFeedInitCode(p).slice(2 + 30)}`;
}

/** Deploys the price feed and returns its address. */
export async function deployPriceFeed(a: Anvil, p: { answer: bigint; decimals: number; roundId?: bigint }): Promise<`0x${string}`> {
  const hash = await a.wallet.sendTransaction({ account: a.accounts[0]!, chain: a.wallet.chain, data: priceFeedInitCode(p) });
  const r = await a.public.waitForTransactionReceipt({ hash });
  if (!r.contractAddress || r.status !== 'success') throw new Error(`price feed deploy failed: ${r.status}`);
  return r.contractAddress;
}

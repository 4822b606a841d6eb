import { describe, expect, it } from 'vitest';
import { computeCost, Dec, decimalUsdToMicros, gasCost, llmCost, meteredCost, MoneyError, rliCost, type LlmPriceTable } from '../rules/index.ts';

/*
 * The cost equations compute plain decimals exactly (BigInt, rounded half-even once) and leave the rest to
 * decimal.js. Here each equation is held to decimal.js directly, on generated inputs of many sizes and
 * scales, on rounding ties, and on amounts out of range.
 */
let seed = 20261202;
const rnd = (n: number): number => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed % n;
};
const digits = (n: number): string => Array.from({ length: n }, () => String(rnd(10))).join('');
/** A plain decimal: 1-12 integer digits (leading zeros kept sometimes), 0-12 fraction digits (trailing zeros too). */
const plain = (): string => {
  const int = digits(1 + rnd(rnd(3) === 0 ? 12 : 4));
  const frac = rnd(3) === 0 ? '' : digits(1 + rnd(12));
  return frac ? `${int}.${frac}` : int;
};
const usd = (d: InstanceType<typeof Dec>): number | 'out of range' => {
  try {
    return decimalUsdToMicros(d);
  } catch (e) {
    if (e instanceof MoneyError) return 'out of range';
    throw e;
  }
};
const got = (f: () => number): number | 'out of range' => {
  try {
    return f();
  } catch (e) {
    if (e instanceof MoneyError) return 'out of range';
    throw e;
  }
};

describe('exact cost equations agree with decimal.js', () => {
  it('rli, compute and metered amounts, including half-even ties', () => {
    const ties = ['0.0000005', '0.0000015', '0.0000025', '1.0000035', '2.00000050', '0.00000049999', '0.00000050001'];
    for (const s of ties) expect(rliCost(s), s).toBe(decimalUsdToMicros(new Dec(s)));
    expect(rliCost('0.0000005')).toBe(0);
    expect(rliCost('0.0000015')).toBe(2);
    expect(rliCost('0.0000025')).toBe(2);
    for (let i = 0; i < 3000; i++) {
      const [a, b] = [plain(), plain()];
      expect(got(() => rliCost(a)), a).toEqual(usd(new Dec(a)));
      expect(got(() => computeCost(a, b)), `${a} x ${b}`).toEqual(usd(new Dec(a).times(b)));
      expect(got(() => meteredCost('bandwidth', a, b)), `${a} x ${b}`).toEqual(usd(new Dec(a).times(b)));
    }
  });

  it('gas: units x gwei x 1e-9 x USD per native token', () => {
    for (let i = 0; i < 3000; i++) {
      const g = digits(1 + rnd(12));
      const [p, n] = [plain(), plain()];
      expect(got(() => gasCost(g, p, n)), `${g} ${p} ${n}`).toEqual(usd(new Dec(g).times(p).times('1e-9').times(n)));
      expect(got(() => gasCost(BigInt(g), p, n))).toEqual(usd(new Dec(g).times(p).times('1e-9').times(n)));
    }
    // A fraction of a gas unit is refused, as before.
    expect(() => gasCost('21000.5', '30', '2500')).toThrow(/whole number/);
  });

  it('LLM tokens by class over several models', () => {
    for (let i = 0; i < 2000; i++) {
      const prices: LlmPriceTable = {
        a: { inputPerMTokUsd: plain(), outputPerMTokUsd: plain() },
        b: { inputPerMTokUsd: plain(), outputPerMTokUsd: plain(), cacheReadPerMTokUsd: plain(), cacheCreationPerMTokUsd: plain(), reasoningPerMTokUsd: plain() },
      };
      const usage = Array.from({ length: 1 + rnd(3) }, () => {
        const input = rnd(2_000_000);
        const output = rnd(500_000);
        const cacheRead = rnd(2) ? rnd(input + 1) : 0;
        return { model: rnd(2) ? 'a' : 'b', inputTokens: input, outputTokens: output, cacheReadTokens: cacheRead, cacheCreationTokens: rnd(input - cacheRead + 1), reasoningTokens: rnd(output + 1) };
      });
      let want = new Dec(0);
      for (const u of usage) {
        const p = prices[u.model]!;
        want = want
          .plus(new Dec(u.inputTokens - u.cacheReadTokens - u.cacheCreationTokens).times(p.inputPerMTokUsd))
          .plus(new Dec(u.cacheReadTokens).times(p.cacheReadPerMTokUsd ?? p.inputPerMTokUsd))
          .plus(new Dec(u.cacheCreationTokens).times(p.cacheCreationPerMTokUsd ?? p.inputPerMTokUsd))
          .plus(new Dec(u.outputTokens - u.reasoningTokens).times(p.outputPerMTokUsd))
          .plus(new Dec(u.reasoningTokens).times(p.reasoningPerMTokUsd ?? p.outputPerMTokUsd));
      }
      expect(got(() => llmCost(usage, prices)), JSON.stringify({ usage, prices })).toEqual(usd(want.dividedBy(1_000_000)));
    }
    // What the exact path does not take is still refused by the decimal path, naming the field.
    expect(() => llmCost([{ model: 'z', inputTokens: 1, outputTokens: 1 }], {})).toThrow(/llm\[0\]\.model/);
    expect(() => llmCost([{ model: 'a', inputTokens: 1, outputTokens: 1, cacheReadTokens: 2 }], { a: { inputPerMTokUsd: '1', outputPerMTokUsd: '1' } })).toThrow(/cannot exceed/);
  });

  it('out of range, exponents and more than 60 digits go through decimal.js with the same outcome', () => {
    expect(() => rliCost('99999999999999')).toThrow(MoneyError);
    expect(() => computeCost('9999999999', '9999999999')).toThrow(MoneyError);
    expect(rliCost('1e-6')).toBe(1);
    expect(rliCost(' 0.5 ')).toBe(500_000);
    const long = `0.${'3'.repeat(70)}`;
    expect(computeCost(long, long)).toBe(decimalUsdToMicros(new Dec(long).times(long)));
    expect(() => rliCost('-1')).toThrow(/negative/);
  });
});

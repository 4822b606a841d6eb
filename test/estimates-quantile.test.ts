import { describe, expect, it } from 'vitest';
import { LearnedEstimates } from '../guard/estimates.ts';

/** The quantile as the estimates define it, from a copy sorted afresh. */
function quantileOf(samples: readonly number[], q: number): number {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

describe('LearnedEstimates: the quantiles kept sorted as samples come and go', () => {
  it('answers what a fresh sort of the last 200 samples answers, through thousands of samples and a re-seed', () => {
    const e = new LearnedEstimates();
    const ratios: number[] = [];
    const costs: number[] = [];
    let x = 12345;
    const next = (n: number): number => {
      x = (x * 1103515245 + 12345) % 2147483648;
      return x % n;
    };
    for (let i = 0; i < 3000; i++) {
      const estimate = 1 + next(1000);
      // Repeated values too, so removing the oldest finds one of several equal ones.
      const actual = next(4) === 0 ? 500 : next(3000);
      e.noteRatio('t', 'x', estimate, actual);
      ratios.push(Math.round((actual * 1_000_000) / estimate));
      if (ratios.length > 200) ratios.shift();
      e.noteCost('t', 'x', actual);
      costs.push(actual);
      if (costs.length > 200) costs.shift();
      if (i % 7 === 0) {
        expect(e.factorPpm('t', 'x')).toBe(ratios.length < 3 ? undefined : Math.max(1_000_000, quantileOf(ratios, 0.95)));
        expect(e.costQuantile('t', 'x')).toBe(quantileOf(costs, 0.99));
      }
    }
    e.seedRatios('t', 'x', [3_000_000, 1_000_000, 2_000_000]);
    expect(e.factorPpm('t', 'x')).toBe(3_000_000);
    e.noteRatio('t', 'x', 100, 400);
    expect(e.factorPpm('t', 'x')).toBe(4_000_000);
  });
});

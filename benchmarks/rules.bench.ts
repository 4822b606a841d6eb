import { emptyScope, evaluateTask, scopesOf, thresholdsOf, usdToMicros, zeroComponents, type ScopeState } from '../rules/index.ts';
import { percentile, type Benchmark } from './harness.ts';

/**
 * Guardrail decision in process: all stop conditions for one finalized task (its global, tenant and run
 * scopes) with 100,000 scopes loaded. Baseline: the least a budget check can do per task (look up three
 * counters, add, compare with one cap), so the ratio is the price of evaluating every condition.
 */
const bench: Benchmark = {
  name: 'rules',
  description: 'Evaluating every stop condition for one finalized task (3 scopes) with 100,000 scopes loaded, in process.',
  async run(size) {
    const scopes = size === 'full' ? 100_000 : 1_000;
    const iterations = size === 'full' ? 300_000 : 3_000;
    const t0 = Date.parse('2026-03-02T00:00:00Z');
    const b = thresholdsOf({ daySoft: usdToMicros(800), dayHard: usdToMicros(1000), weekSoft: usdToMicros(4000), weekHard: usdToMicros(5000), runCap: usdToMicros(50000), unitCap: usdToMicros(50), k: 5 });
    const tenants = Math.max(1, Math.floor(scopes / 20));
    const runsPerTenant = Math.floor((scopes - tenants - 1) / tenants);
    const state = new Map<string, ScopeState>();
    const counters = new Map<string, number>();
    for (let t = 0; t < tenants; t++) {
      for (let r = 0; r < runsPerTenant; r++) {
        for (const k of scopesOf(`t${t}`, `r${r}`)) {
          if (!state.has(k)) {
            state.set(k, emptyScope(t0));
            counters.set(k, 0);
          }
        }
      }
    }
    const keys: Array<[string, string, string]> = [];
    let x = 7;
    for (let i = 0; i < iterations; i++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      keys.push(scopesOf(`t${x % tenants}`, `r${(x >> 8) % runsPerTenant}`));
    }
    const amount = usdToMicros('0.37');
    const comps = { ...zeroComponents(), compute: amount };
    const forge: number[] = new Array<number>(iterations);
    const base: number[] = new Array<number>(iterations);
    const cap = usdToMicros(1000);
    let denied = 0;
    for (let i = 0; i < iterations; i++) {
      const ks = keys[i]!;
      const at = t0 + i * 10;
      const task = { at, components: comps, totalMicros: amount, failed: (i & 15) === 0 };
      let s0 = performance.now();
      for (const k of ks) state.set(k, evaluateTask(b, state.get(k)!, task, at).state);
      forge[i] = (performance.now() - s0) * 1000;
      s0 = performance.now();
      for (const k of ks) {
        const v = counters.get(k)! + amount;
        counters.set(k, v);
        if (v >= cap) denied++;
      }
      base[i] = (performance.now() - s0) * 1000;
    }
    forge.sort((a, c) => a - c);
    base.sort((a, c) => a - c);
    const rows = [50, 99].map((p) => ({
      metric: `all conditions, one task (3 scopes), p${p}`,
      value: percentile(forge, p),
      unit: 'µs',
      baselineLabel: 'bare counter add + one cap compare',
      baseline: percentile(base, p),
      ratio: percentile(forge, p) / Math.max(percentile(base, p), 1e-3),
      target: p === 99 ? 'p99 < 2 µs' : undefined,
    }));
    return { rows, notes: [`${state.size.toLocaleString('en-US')} scopes loaded, ${iterations.toLocaleString('en-US')} tasks, 1 in 16 failed; timer: performance.now() per task (its own overhead, ~0.1 µs, is in both figures). Baseline counted ${denied} over-cap checks.`] };
  },
};
export default bench;

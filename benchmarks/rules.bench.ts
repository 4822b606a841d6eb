import { ScopeTable, scopesOf, thresholdsOf, usdToMicros, zeroComponents } from '../rules/index.ts';
import { percentile, type Benchmark, type BenchRow } from './harness.ts';

/**
 * Guardrail decision in process: all stop conditions for one finalized task (its global, tenant and run
 * scopes) with 100,000 scopes loaded. Baseline: the least a budget check can do per task (look up three
 * counters, add, compare with one cap), so the ratio is the price of evaluating every condition.
 *
 * Two measurements. Latency: each task timed on its own with performance.now(); the timer's own cost (an
 * empty timed region, measured in the same loop) is reported beside it and is in both figures. CPU: a second
 * pass over the same tasks with no timer, process CPU time (process.cpuUsage) divided by the tasks, which a
 * preemption by another process on this shared machine does not inflate the way it inflates a percentile.
 */
const bench: Benchmark = {
  name: 'rules',
  description: 'Evaluating every stop condition for one finalized task (3 scopes) with 100,000 scopes loaded, in process.',
  async run(size) {
    const scopes = size === 'full' ? 100_000 : 1_000;
    const iterations = size === 'full' ? 300_000 : 3_000;
    // From 09:00 UTC, so that the projected-breach preconditions (past the first hour of the day) are evaluated too.
    const t0 = Date.parse('2026-03-02T09:00:00Z');
    const b = thresholdsOf({ daySoft: usdToMicros(800), dayHard: usdToMicros(1000), weekSoft: usdToMicros(4000), weekHard: usdToMicros(5000), runCap: usdToMicros(50000), unitCap: usdToMicros(50), k: 5 });
    const tenants = Math.max(1, Math.floor(scopes / 20));
    const runsPerTenant = Math.floor((scopes - tenants - 1) / tenants);
    // The guard's own layout of the rule state (rules/scope-table.ts), looked up by scope key as the guard does.
    const state = new ScopeTable();
    const counters = new Map<string, number>();
    for (let t = 0; t < tenants; t++) {
      for (let r = 0; r < runsPerTenant; r++) {
        for (const k of scopesOf(`t${t}`, `r${r}`)) {
          if (!state.has(k)) {
            state.ensure(k, t0);
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
    const cap = usdToMicros(1000);
    let denied = 0;
    /** Evaluations that came back with something to act on (a condition held or the guard changed). */
    let engineEvaluations = 0;
    const taskAt = (i: number, at: number) => ({ at, components: comps, totalMicros: amount, failed: (i & 15) === 0 });
    const forgeTask = (ks: readonly string[], task: ReturnType<typeof taskAt>): void => {
      for (const k of ks) if (state.evaluateTask(state.ensure(k, task.at), b, task, task.at) !== undefined) engineEvaluations++;
    };
    const baseTask = (ks: readonly string[]): void => {
      for (const k of ks) {
        const v = counters.get(k)! + amount;
        counters.set(k, v);
        if (v >= cap) denied++;
      }
    };

    // Latency, one task at a time.
    const forge: number[] = new Array<number>(iterations);
    const base: number[] = new Array<number>(iterations);
    const timer: number[] = new Array<number>(iterations);
    for (let i = 0; i < iterations; i++) {
      const ks = keys[i]!;
      const task = taskAt(i, t0 + i * 10);
      let s0 = performance.now();
      forgeTask(ks, task);
      forge[i] = (performance.now() - s0) * 1000;
      s0 = performance.now();
      baseTask(ks);
      base[i] = (performance.now() - s0) * 1000;
      s0 = performance.now();
      timer[i] = (performance.now() - s0) * 1000;
    }

    // CPU per task, no timer in the loop: the same tasks again, later in the same day.
    const later = t0 + iterations * 10;
    let c0 = process.cpuUsage();
    for (let i = 0; i < iterations; i++) forgeTask(keys[i]!, taskAt(i, later + i * 10));
    const forgeCpu = process.cpuUsage(c0);
    c0 = process.cpuUsage();
    for (let i = 0; i < iterations; i++) baseTask(keys[i]!);
    const baseCpu = process.cpuUsage(c0);
    const perTask = (u: NodeJS.CpuUsage) => (u.user + u.system) / iterations;

    forge.sort((a, c) => a - c);
    base.sort((a, c) => a - c);
    timer.sort((a, c) => a - c);
    const rows: BenchRow[] = [50, 99, 99.9].map((p) => ({
      metric: `all conditions, one task (3 scopes), p${p}`,
      value: percentile(forge, p),
      unit: 'µs',
      baselineLabel: 'bare counter add + one cap compare',
      baseline: percentile(base, p),
      ratio: percentile(forge, p) / Math.max(percentile(base, p), 1e-3),
      target: p === 99 ? 'p99 < 2 µs' : undefined,
    }));
    rows.push({
      metric: 'all conditions, one task (3 scopes), process CPU per task (no timer)',
      value: perTask(forgeCpu),
      unit: 'µs',
      baselineLabel: 'bare counter add + one cap compare, CPU per task',
      baseline: perTask(baseCpu),
      ratio: perTask(forgeCpu) / Math.max(perTask(baseCpu), 1e-3),
    });
    const tp = (p: number) => Number(percentile(timer, p).toFixed(3));
    return {
      rows,
      notes: [
        `${state.size.toLocaleString('en-US')} scopes loaded, ${iterations.toLocaleString('en-US')} tasks timed one by one (1 in 16 failed), then the same ${iterations.toLocaleString('en-US')} again untimed for the CPU figure. Timer overhead (an empty performance.now() region in the same loop, included in every latency figure): p50 ${tp(50)} µs, p99 ${tp(99)} µs, p99.9 ${tp(99.9)} µs. Baseline counted ${denied} over-cap checks; ${engineEvaluations} of ${(6 * iterations).toLocaleString('en-US')} scope evaluations came back to be acted on (a change, a hard day: the engine's path).`,
      ],
    };
  },
};
export default bench;

import { describe, expect, it } from 'vitest';
import { loadBenchmarks } from '../benchmarks/run.ts';

// Every benchmark runs at its tiny size: it runs to the end and produces figures with their baselines.
// Never how fast (performance is measured by `npm run bench`, not asserted here).
const benchmarks = await loadBenchmarks();

describe('benchmarks at tiny size', () => {
  it('are all found', () => {
    expect(benchmarks.map((b) => b.name).sort()).toEqual(expect.arrayContaining(['api', 'halt', 'ingest', 'overshoot', 'restart', 'rules', 'scale']));
    expect(new Set(benchmarks.map((b) => b.name)).size).toBe(benchmarks.length);
  });

  for (const b of benchmarks) {
    it(`${b.name} runs and reports each figure beside its baseline`, async () => {
      const r = await b.run('tiny');
      expect(r.rows.length).toBeGreaterThan(0);
      for (const row of r.rows) {
        expect(row.metric).not.toBe('');
        expect(row.baselineLabel).not.toBe('');
        expect(Number.isFinite(row.value), `${row.metric}: value`).toBe(true);
        expect(Number.isFinite(row.baseline), `${row.metric}: baseline`).toBe(true);
        if (row.ratio !== undefined) expect(row.ratio).toBeCloseTo(row.value / row.baseline, 6);
      }
    }, 180_000);
  }
});

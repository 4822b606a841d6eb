import { describe, expect, it } from 'vitest';
import { ForgeMetrics } from '../collector/index.ts';
import type { CostEvent } from '../store/index.ts';

// The four canonical names the cost model lists besides the cost series, and stop-condition counts that
// read 0 on a fresh start rather than appearing only after a first escalation.
function ev(tenantId: string, status: CostEvent['status'], totalMicros: number, rliMicros: number): CostEvent {
  return {
    eventId: `e-${Math.random()}`, tenantId, runId: 'r', taskId: 't', taskType: 'x', model: '', environment: 'e', status, eventTime: 0, ingestTime: 0,
    rliMicros, gasMicros: totalMicros - rliMicros, computeMicros: 0, storageMicros: 0, llmMicros: 0, totalMicros,
    gasUsed: '0', gasPriceGwei: '0', nativeUsd: '0', gasSource: 'none', chainId: 0, txHash: '', taskHours: '0', computeHourUsd: '0', gbStored: '0', storageGbMonthUsd: '0', llmTokens: [],
  };
}

describe('canonical metrics', () => {
  it('a fresh start shows the three stop-condition counts at 0', async () => {
    const m = new ForgeMetrics();
    try {
      const text = await m.render();
      for (const n of ['warning', 'hard_stop', 'emergency_stop']) expect(text).toContain(`forge_stop_condition_${n}_count{scope="global",tenant=""} 0\n`);
      // The global series is not a tenant's: public metrics keep it.
      expect(await m.render({ tenantSeries: false })).toContain('forge_stop_condition_emergency_stop_count{scope="global",tenant=""} 0\n');
    } finally {
      await m.shutdown();
    }
  });

  it('forge.tasks.evaluated.count, forge.tasks.retry_rate, forge.cost.usd_per_successful_task and forge.cost.usd_per_accepted_task', async () => {
    const m = new ForgeMetrics();
    try {
      m.recordEvent(ev('acme', 'success', 3_000_000, 1_000_000));
      m.recordEvent(ev('acme', 'success', 1_000_000, 0));
      m.recordEvent(ev('acme', 'retried', 2_000_000, 1_000_000));
      m.recordEvent(ev('acme', 'failed', 2_000_000, 0));
      const text = await m.render();
      expect(text).toContain('forge_tasks_evaluated_count{tenant="acme"} 2\n');
      expect(text).toContain('forge_tasks_retry_rate{tenant="acme"} 0.25\n');
      // $8 over 2 successful tasks; $8 over 4 accepted ones.
      expect(text).toContain('forge_cost_usd_per_successful_task{tenant="acme"} 4\n');
      expect(text).toContain('forge_cost_usd_per_accepted_task{tenant="acme"} 2\n');
      const names = new Set(text.split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]));
      for (const n of ['forge_tasks_evaluated_count', 'forge_tasks_retry_rate', 'forge_cost_usd_per_successful_task', 'forge_cost_usd_per_accepted_task']) expect(names).toContain(n);
    } finally {
      await m.shutdown();
    }
  });
});

describe('a batch of accepted events', () => {
  it('recordEvents renders what recordEvent per event renders (counters added once per tenant)', async () => {
    const events = [
      ev('acme', 'success', 3_000_000, 1_000_000),
      ev('globex', 'failed', 2_000_000, 0),
      ev('acme', 'retried', 2_500_000, 500_000),
      ev('acme', 'failed', 1_000_000, 0),
      ev('globex', 'success', 4_000_000, 4_000_000),
    ];
    const one = new ForgeMetrics();
    const batch = new ForgeMetrics();
    try {
      for (const e of events) one.recordEvent(e);
      batch.recordEvents(events);
      const text = await batch.render();
      expect(text).toEqual(await one.render());
      expect(text).toContain('forge_tasks_evaluated_count{tenant="acme"} 2\n');
      expect(text).toContain('forge_tasks_evaluated_count{tenant="globex"} 1\n');
    } finally {
      await one.shutdown();
      await batch.shutdown();
    }
  });
});

describe('per-operation cost histograms', () => {
  it('count, sum and cumulative buckets by tenant, a value on a bound in its bucket, labels escaped; none on a fresh start; not in public metrics', async () => {
    const m = new ForgeMetrics();
    try {
      expect(await m.render()).not.toContain('forge_cost_total_op_usd');
      const odd = 'a"b\\c\nd';
      // Totals of 0.1 (a bucket bound), 0.3 and 2000 USD (above the last bound): the rli part is 0.1 each time.
      m.recordEvents([ev(odd, 'success', 100_000, 100_000), ev(odd, 'success', 300_000, 100_000), ev('acme', 'success', 2_000_000_000, 100_000)]);
      const text = await m.render();
      const label = 'tenant="a\\"b\\\\c\\nd"';
      expect(text).toContain('# TYPE forge_cost_total_op_usd histogram\n');
      expect(text).toContain(`forge_cost_total_op_usd_count{${label}} 2\n`);
      expect(text).toContain(`forge_cost_total_op_usd_sum{${label}} 0.4\n`);
      expect(text).toContain(`forge_cost_total_op_usd_bucket{${label},le="0.05"} 0\n`);
      expect(text).toContain(`forge_cost_total_op_usd_bucket{${label},le="0.1"} 1\n`);
      expect(text).toContain(`forge_cost_total_op_usd_bucket{${label},le="0.25"} 1\n`);
      expect(text).toContain(`forge_cost_total_op_usd_bucket{${label},le="0.5"} 2\n`);
      expect(text).toContain(`forge_cost_total_op_usd_bucket{${label},le="+Inf"} 2\n`);
      expect(text).toContain('forge_cost_total_op_usd_bucket{tenant="acme",le="1000"} 0\n');
      expect(text).toContain('forge_cost_total_op_usd_bucket{tenant="acme",le="+Inf"} 1\n');
      expect(text).toContain('forge_cost_rli_op_usd_sum{tenant="acme"} 0.1\n');
      const pub = await m.render({ tenantSeries: false });
      expect(pub).toContain('# TYPE forge_cost_total_op_usd histogram\n');
      expect(pub).not.toContain('forge_cost_total_op_usd_count{');
    } finally {
      await m.shutdown();
    }
  });
});

describe('month trend (pure)', () => {
  it('warns from mid-month when the month at its pace is 2x the average month; not before, not below', async () => {
    const { monthTrend } = await import('../alerts/index.ts');
    const mid = Date.UTC(2026, 2, 16); // March: 15 of 31 days passed
    // $100 average; $100 so far in half a month -> about $206 for the month: >= 2x.
    expect(monthTrend({ monthSoFarMicros: 100_000_000, previousMonthsMicros: [80_000_000, 120_000_000, 0], now: mid })).toEqual({ projectedMicros: Math.floor((100_000_000 * 31) / 15), averageMicros: 100_000_000, factor: 2 });
    expect(monthTrend({ monthSoFarMicros: 90_000_000, previousMonthsMicros: [100_000_000], now: mid })).toBeUndefined();
    expect(monthTrend({ monthSoFarMicros: 100_000_000, previousMonthsMicros: [100_000_000], now: Date.UTC(2026, 2, 10) })).toBeUndefined();
    expect(monthTrend({ monthSoFarMicros: 100_000_000, previousMonthsMicros: [], now: mid })).toBeUndefined();
  });
});

import { Guardrail, InProcessLedger, InProcessHaltBus } from '../../guard/index.ts';
import { parseBandsConfig } from '../../rules/index.ts';
const bands = parseBandsConfig('global:\n  B_day_soft: 800000000\n  B_day_hard: 900000000\n  B_week_soft: 900000000\n  B_week_hard: 990000000\n  B_run_cap: 999999999\n  B_unit_cap: 100\n');
const ledger = new InProcessLedger();
const g = new Guardrail({ bands, ledger, bus: new InProcessHaltBus(), now: Date.now, onChange: () => {}, audit: async () => {}, onError: (e) => console.error(e), reservationTtlMs: 60_000 });
const N = Number(process.argv[2] ?? 200000);
for (let round = 0; round < 3; round++) {
  const t0 = performance.now();
  for (let i = 0; i < N; i++) await g.admit({ tenantId: 'bench', runId: 'r1', taskType: 'eval', estimatedMicros: 10000, estimateSource: 'runner' });
  const t1 = performance.now();
  console.log(`admit ${(((t1 - t0) * 1000) / N).toFixed(2)} us/op, heap ${(process.memoryUsage().heapUsed / 1048576).toFixed(0)} MiB`);
}

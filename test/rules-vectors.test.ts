import { describe, expect, it } from 'vitest';
import {
  bandsFromModelKeys,
  dayFromLabel,
  emptyScope,
  evaluateTask,
  microsToUsd,
  operationCost,
  thresholdsOf,
  usdToMicros,
  zeroComponents,
  type ScopeState,
} from '../rules/index.ts';
import { loadVectors } from './helpers/vectors.ts';

const v = loadVectors();

describe('cost model worked examples', () => {
  for (const op of v.operations) {
    it(op.name, () => {
      const i = op.input;
      const c = operationCost({
        rliEvalUsd: i.C_rli_eval!,
        gasUsed: i.G_used!,
        gasPriceGwei: i.P_gas_gwei!,
        nativeUsd: i.P_native_usd!,
        taskHours: i.H_task!,
        computeHourUsd: i.C_compute_hour!,
        gbStored: i.GB_stored!,
        storageGbMonthUsd: i.C_storage_gb_month!,
        expectedTasksDay: Number(i.expected_tasks_day),
      });
      expect(microsToUsd(c.rli)).toBe(op.expect.rli);
      expect(microsToUsd(c.gas)).toBe(op.expect.gas);
      expect(microsToUsd(c.compute)).toBe(op.expect.compute);
      expect(microsToUsd(c.storageDay)).toBe(op.expect.storage_day);
      expect(microsToUsd(c.storage)).toBe(op.expect.storage);
      expect(microsToUsd(c.total)).toBe(op.expect.total);
    });
  }
});

describe('stop-condition scenarios', () => {
  for (const sc of v.scenarios) {
    it(sc.name, () => {
      const b = thresholdsOf(bandsFromModelKeys(sc.bands));
      const first = Date.parse(sc.events[0]!.at);
      let s: ScopeState = emptyScope(first);
      const history = Object.entries(sc.history ?? {}).map(([label, usd]) => {
        const m = usdToMicros(usd);
        return { day: dayFromLabel(label), components: { ...zeroComponents(), compute: m }, opsMicros: m, tasks: 1, failed: 0 };
      });
      s = { ...s, spend: { ...s.spend, days: history.sort((a, c) => c.day - a.day) } };
      sc.events.forEach((e, n) => {
        const at = Date.parse(e.at);
        const total = usdToMicros(e.total);
        const r = evaluateTask(b, s, { at, components: { ...zeroComponents(), rli: total }, totalMicros: total, failed: e.failed === true }, at);
        s = r.state;
        const want = sc.expect[n]!;
        const got = {
          state: s.guard.state,
          holds: r.holds.map((h) => `${h.level[0]}:${h.id}`).sort(),
          day: microsToUsd(r.totals.dayMicros),
          week: microsToUsd(r.totals.weekMicros),
          run: microsToUsd(r.totals.runMicros),
        };
        expect(got, `after event ${n} (${e.at})`).toEqual({
          state: want.state,
          holds: [...want.holds].sort(),
          day: want.day_usd,
          week: want.week_usd,
          run: want.run_usd,
        });
      });
    });
  }
});

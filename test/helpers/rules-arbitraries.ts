import fc from 'fast-check';
import { thresholdsOf } from '../../rules/index.ts';

/**
 * Random budget bands for the rules' property tests: a day hard cap, its soft share, the week's and the run's
 * multiples of it, a unit-cost cap and the streak length k (every band consistent: soft under hard).
 */
export const bandsArb = fc
  .record({
    dayHard: fc.integer({ min: 1_000_000, max: 400_000_000 }),
    softPct: fc.integer({ min: 50, max: 100 }),
    weekMult: fc.integer({ min: 1, max: 7 }),
    runMult: fc.integer({ min: 1, max: 20 }),
    unitCap: fc.integer({ min: 100_000, max: 60_000_000 }),
    k: fc.integer({ min: 1, max: 5 }),
  })
  .map((r) =>
    thresholdsOf({
      daySoft: Math.floor((r.dayHard * r.softPct) / 100),
      dayHard: r.dayHard,
      weekSoft: Math.floor((r.dayHard * r.weekMult * r.softPct) / 100),
      weekHard: r.dayHard * r.weekMult,
      runCap: r.dayHard * r.runMult,
      unitCap: r.unitCap,
      k: r.k,
    }),
  );

import { usdToMicros, type Micros } from './money.ts';

/** Budget bands of one scope, USD micros (K is a count). Field names follow the cost model. */
export interface Bands {
  /** B_day_soft */
  daySoft: Micros;
  /** B_day_hard */
  dayHard: Micros;
  /** B_week_soft (rolling 7 days) */
  weekSoft: Micros;
  /** B_week_hard (rolling 7 days) */
  weekHard: Micros;
  /** B_run_cap (cumulative) */
  runCap: Micros;
  /** B_unit_cap (one operation) */
  unitCap: Micros;
  /** K: consecutive operations at or above B_unit_cap that make a hard stop. */
  k: number;
}

/** Thresholds derived from bands once, as exact integer micros (values are integers, so >= ceil(x)). */
export interface Thresholds extends Bands {
  /** 1.1 x B_day_hard */
  dayEmergency: Micros;
  /** 0.9 x B_unit_cap */
  unitNearCap: Micros;
  /** 1.25 x B_unit_cap */
  unitEmergency: Micros;
}

function ceilFraction(m: Micros, num: bigint, den: bigint): Micros {
  const x = BigInt(m) * num;
  return Number((x + den - 1n) / den);
}

export function thresholdsOf(b: Bands): Thresholds {
  return {
    ...b,
    dayEmergency: ceilFraction(b.dayHard, 11n, 10n),
    unitNearCap: ceilFraction(b.unitCap, 9n, 10n),
    unitEmergency: ceilFraction(b.unitCap, 5n, 4n),
  };
}

/** Soft, hard and emergency levels derived from an approved budget: 80% / 100% / 110%. */
export function bandsFromApproved(approvedUsd: string | number): { soft: Micros; hard: Micros; emergency: Micros } {
  const hard = usdToMicros(approvedUsd);
  return { soft: ceilFraction(hard, 8n, 10n), hard, emergency: ceilFraction(hard, 11n, 10n) };
}

export const DEFAULT_K = 5;

import Decimal from 'decimal.js';

/**
 * Money is integer micro-dollars (1 USD = 1,000,000). A JS number holds integers exactly up to
 * 2^53, i.e. about 9 billion USD, so sums of micro-dollars never drift the way binary float
 * dollars do. Conversions from decimal inputs go through decimal.js and round half-even once.
 */
export type Micros = number;

export const MICROS_PER_USD = 1_000_000;

const D = Decimal.clone({ precision: 60, rounding: Decimal.ROUND_HALF_EVEN });
export { D as Dec };

export class MoneyError extends Error {
  readonly code = 'FORGE_ERR_MONEY';
}

const PLAIN_USD = /^(-)?(\d{1,9})(?:\.(\d{1,6}))?$/;

/** Parses a USD amount given as a decimal string or number into micro-dollars. */
export function usdToMicros(usd: string | number): Micros {
  // Plain decimal strings with at most 6 decimals (what clients send on every admission and event): exact
  // with integer arithmetic, no rounding needed. Everything else goes through decimal.js.
  if (typeof usd === 'string') {
    const m = PLAIN_USD.exec(usd);
    if (m) {
      const whole = Number(m[2]);
      const frac = m[3] ? Number(m[3].padEnd(6, '0')) : 0;
      const v = whole * MICROS_PER_USD + frac;
      if (Number.isSafeInteger(v)) return m[1] ? -v || 0 : v;
    }
  }
  const d = toDecimal(usd, 'amount');
  return decimalUsdToMicros(d);
}

/** Rounds a decimal USD amount to integer micro-dollars (half-even). */
export function decimalUsdToMicros(usd: Decimal): Micros {
  const m = usd.times(MICROS_PER_USD).toDecimalPlaces(0, Decimal.ROUND_HALF_EVEN);
  const n = m.toNumber();
  if (!Number.isSafeInteger(n)) throw new MoneyError(`amount out of range: ${usd.toString()} USD`);
  return n;
}

/** Formats micro-dollars as a plain decimal USD string without trailing zeros ("4.375"). */
export function microsToUsd(m: Micros): string {
  // Integer micros (the common case, on every API answer): exact with integer arithmetic, no Decimal.
  if (Number.isSafeInteger(m)) {
    const abs = m < 0 ? -m : m;
    const whole = Math.floor(abs / MICROS_PER_USD);
    const frac = abs - whole * MICROS_PER_USD;
    const sign = m < 0 ? '-' : '';
    if (frac === 0) return `${sign}${whole}`;
    return `${sign}${whole}.${String(frac).padStart(6, '0').replace(/0+$/, '')}`;
  }
  return new D(m).dividedBy(MICROS_PER_USD).toFixed();
}

/** Micro-dollars as a JS number of dollars, for display and metrics only (never summed). */
export function microsToUsdNumber(m: Micros): number {
  return m / MICROS_PER_USD;
}

/** Whether a decimal amount (string or number) is zero; plain decimal strings without decimal.js. */
export function isZeroAmount(v: string | number): boolean {
  if (typeof v === 'string') {
    if (/^0+(\.0+)?$/.test(v)) return true;
    if (/^\d+(\.\d+)?$/.test(v)) return false;
  }
  return new D(v).isZero();
}

export function toDecimal(v: string | number | Decimal, what: string): Decimal {
  if (typeof v === 'number' && !Number.isFinite(v)) throw new MoneyError(`${what} must be a finite number`);
  if (typeof v === 'string' && !/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(v.trim())) {
    throw new MoneyError(`${what} must be a decimal number, got "${v}"`);
  }
  return new D(typeof v === 'string' ? v.trim() : v);
}

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BandsConfigError, parseBandsConfig, runScope, tenantScope, usdToMicros } from '../rules/index.ts';

const good = `global:
  B_day_soft: 80
  B_day_hard: 100
  B_week_soft: 400
  B_week_hard: 500
  B_run_cap: 1000
  B_unit_cap: 50
tenants:
  acme:
    B_day_hard: 90
runs:
  acme/r1:
    B_run_cap: "12.50"
`;

function errorOf(text: string): BandsConfigError {
  try {
    parseBandsConfig(text, 'b.yaml');
  } catch (e) {
    if (e instanceof BandsConfigError) return e;
    throw e;
  }
  throw new Error('expected a BandsConfigError');
}

describe('budget bands file', () => {
  it('resolves inheritance global -> tenant -> run, K defaults to 5', () => {
    const book = parseBandsConfig(good);
    expect(book.forScope(runScope('acme', 'r1'))).toMatchObject({ dayHard: usdToMicros(90), runCap: usdToMicros('12.5'), daySoft: usdToMicros(80), k: 5 });
    expect(book.forScope(runScope('acme', 'other')).runCap).toBe(usdToMicros(1000));
    expect(book.forScope(tenantScope('nobody')).dayHard).toBe(usdToMicros(100));
    // A run of a tenant with no bands of its own takes the global ones; a tenant's id is matched whole.
    expect(book.forScope(runScope('nobody', 'r1'))).toBe(book.forScope('global'));
    expect(book.forScope(runScope('acm', 'r1'))).toBe(book.forScope('global'));
    expect(book.forScope(runScope('acme', 'other'))).toBe(book.forScope(tenantScope('acme')));
    expect(book.forScope('global').dayEmergency).toBe(usdToMicros(110));
  });
  it('derives soft and hard from an approved budget', () => {
    const book = parseBandsConfig('global:\n  approved_day_usd: 250\n  approved_week_usd: 1000\n  B_run_cap: 5000\n  B_unit_cap: 10\n');
    expect(book.forScope('global')).toMatchObject({ daySoft: usdToMicros(200), dayHard: usdToMicros(250), weekSoft: usdToMicros(800), weekHard: usdToMicros(1000), dayEmergency: usdToMicros(275) });
  });
  it('the shipped config/pilot-budgets.yaml is valid', () => {
    expect(() => parseBandsConfig(readFileSync('config/pilot-budgets.yaml', 'utf8'))).not.toThrow();
  });
  it('missing key names the key and the scope line', () => {
    const e = errorOf(good.replace('  B_unit_cap: 50\n', ''));
    expect(e.key).toBe('global.B_unit_cap');
    expect(e.line).toBe(1);
    expect(e.message).toMatch(/^b\.yaml:1: global\.B_unit_cap: is required/);
  });
  it('soft above hard is refused with the line of the soft key', () => {
    const e = errorOf(good.replace('B_day_hard: 90', 'B_day_hard: 70'));
    expect(e.key).toBe('tenants.acme.B_day_soft');
    expect(e.problem).toMatch(/not be above B_day_hard/);
  });
  it('a negative amount is refused with its line', () => {
    const e = errorOf(good.replace('B_week_soft: 400', 'B_week_soft: -4'));
    expect([e.key, e.line]).toEqual(['global.B_week_soft', 4]);
  });
  it('a wrong type is refused with its line', () => {
    const e = errorOf(good.replace('B_run_cap: 1000', 'B_run_cap: [1, 2]'));
    expect([e.key, e.line]).toEqual(['global.B_run_cap', 6]);
  });
  it('K must be a whole number of at least 1', () => {
    expect(errorOf(good.replace('B_unit_cap: 50', 'B_unit_cap: 50\n  K: 2.5')).key).toBe('global.K');
    expect(errorOf(good.replace('B_unit_cap: 50', 'B_unit_cap: 50\n  K: 0')).key).toBe('global.K');
  });
  it('an unknown key is refused (a typo must not silently drop a band)', () => {
    const e = errorOf(good.replace('B_day_hard: 90', 'B_dayhard: 90'));
    expect(e.key).toBe('tenants.acme.B_dayhard');
    expect(e.line).toBe(10);
  });
  it('more than 6 decimals, NaN-like strings and zero caps are refused', () => {
    expect(errorOf(good.replace('B_run_cap: 1000', 'B_run_cap: "1.0000001"')).key).toBe('global.B_run_cap');
    expect(errorOf(good.replace('B_run_cap: 1000', 'B_run_cap: .nan')).key).toBe('global.B_run_cap');
    expect(errorOf(good.replace('B_unit_cap: 50', 'B_unit_cap: 0')).key).toBe('global.B_unit_cap');
  });
  it('malformed YAML and a bad run key are refused', () => {
    expect(errorOf('global: [\n').key).toBe('(yaml)');
    expect(errorOf(good.replace('acme/r1', 'no-slash')).key).toMatch(/^runs/);
  });
});

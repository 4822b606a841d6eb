import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

function forgeWith(env: Record<string, string>, ...args: string[]) {
  const r = spawnSync(process.execPath, ['bin/forge.mjs', ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, ...env } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const forge = (...args: string[]) => forgeWith({}, ...args);

/** Exit code 2, nothing on stdout, exactly one line on stderr; returns that line. */
function oneLineError(r: { code: number | null; out: string; err: string }): string {
  expect(r.code, r.err).toBe(2);
  expect(r.out).toBe('');
  const lines = r.err.trimEnd().split('\n');
  expect(lines, r.err).toHaveLength(1);
  return lines[0]!;
}

describe('forge CLI', () => {
  it('forge cost prints the components of the worked example', () => {
    const r = forge('cost', '--rli', '0.10', '--gas-used', '21000', '--gas-price-gwei', '30', '--native-usd', '2500', '--hours', '0.25', '--compute-hour-usd', '1.60', '--gb-stored', '300', '--storage-gb-month-usd', '0.23', '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual({ rli_usd: '0.1', gas_usd: '1.575', compute_usd: '0.4', storage_usd: '2.3', bandwidth_usd: '0', storage_day_usd: '2.3', total_usd: '4.375' });
  });
  it('bad input exits 2 with one line naming the flag', () => {
    const r = forge('cost', '--hours', 'lots');
    expect(r.code).toBe(2);
    expect(r.err.trim().split('\n')).toHaveLength(1);
    expect(r.err).toMatch(/--hours/);
  });
  it('budgets check accepts the shipped file and rejects a bad one with file:line: key', () => {
    expect(forge('budgets', 'check', 'config/pilot-budgets.yaml').code).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), 'forge-cli-'));
    const f = join(dir, 'b.yaml');
    writeFileSync(f, 'global:\n  B_day_soft: 120\n  B_day_hard: 100\n  B_week_soft: 1\n  B_week_hard: 2\n  B_run_cap: 3\n  B_unit_cap: 4\n');
    const r = forge('budgets', 'check', f);
    expect(r.code).toBe(2);
    expect(r.err.trim()).toBe(`forge: ${f}:2: global.B_day_soft: must not be above B_day_hard`);
  });
  it('an unknown command exits 2', () => expect(forge('frobnicate').code).toBe(2));

  it('forge with no arguments prints a short usage on stderr and exits 2', () => {
    const r = forge();
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    const lines = r.err.trimEnd().split('\n');
    expect(lines.length).toBeLessThanOrEqual(3);
    expect(r.err).toMatch(/^usage: forge <command>/);
    expect(r.err).toContain('forge --help');
  });
  it('forge --help still prints the full help and exits 0', () => {
    const r = forge('--help');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/Commands:[\s\S]*run/);
  });
  it('forge cost without any cost flag refuses to print zeros', () => {
    expect(oneLineError(forge('cost'))).toMatch(/^forge: cost: nothing to price: give --rli, /);
    expect(oneLineError(forge('cost', '--json'))).toMatch(/nothing to price/);
  });
  it('forge cost refuses a component with one of its inputs left out', () => {
    expect(oneLineError(forge('cost', '--hours', '2'))).toBe('forge: --hours: also give --compute-hour-usd (the compute cost needs it)');
    expect(oneLineError(forge('cost', '--gas-used', '21000'))).toBe('forge: --gas-used: also give --gas-price-gwei and --native-usd (the gas cost needs them)');
  });
  it('--rli 1e400 names the flag; messages use flag names, never internal identifiers', () => {
    expect(oneLineError(forge('cost', '--rli', '1e400'))).toMatch(/^forge: --rli: the evaluation cost is out of range/);
    expect(oneLineError(forge('cost', '--gas-used', '1e30', '--gas-price-gwei', '1e20', '--native-usd', '1'))).toMatch(/^forge: --gas-used, --gas-price-gwei, --native-usd: the gas cost is out of range/);
    const bad = [
      oneLineError(forge('cost', '--rli', 'abc')),
      oneLineError(forge('cost', '--hours', 'x', '--compute-hour-usd', '1')),
      oneLineError(forge('cost', '--hours', '1', '--compute-hour-usd', '-1')),
    ];
    expect(bad[0]).toBe('forge: --rli: must be a decimal number, got "abc"');
    expect(bad[1]).toBe('forge: --hours: must be a decimal number, got "x"');
    expect(bad[2]).toMatch(/^forge: --compute-hour-usd: /);
    for (const l of bad) expect(l).not.toMatch(/rliEvalUsd|taskHours|computeHourUsd|gasUsed/);
  });
  it('a mistyped flag is reported as unknown (with the likely flag), not as a missing required one', () => {
    expect(oneLineError(forge('run', '--suit', 'config/sample-suite.yaml'))).toBe("forge: unknown option '--suit' (did you mean --suite?)");
    expect(oneLineError(forge('keys', 'create', '--nme', 'x', '--role', 'admin'))).toBe("forge: unknown option '--nme' (did you mean --name?)");
    expect(oneLineError(forge('run'))).toBe('forge: required option --suite <file> not given');
  });
  it('a missing FORGE_BUDGETS_FILE / FORGE_PRICING_FILE is reported with the variable, exit 2', () => {
    const dir = mkdtempSync(join(tmpdir(), 'forge-cli-'));
    const data = { FORGE_DATA_DIR: join(dir, 'data'), FORGE_PORT: '0' };
    expect(oneLineError(forgeWith({ ...data, FORGE_BUDGETS_FILE: 'nope.yaml' }, 'start'))).toBe('forge: FORGE_BUDGETS_FILE: no such file "nope.yaml"');
    expect(oneLineError(forgeWith({ ...data, FORGE_PRICING_FILE: 'nope.yaml' }, 'start'))).toBe('forge: FORGE_PRICING_FILE: no such file "nope.yaml"');
    expect(oneLineError(forgeWith({ ...data, FORGE_BUDGETS_FILE: 'nope.yaml' }, 'run', '--suite', 'config/sample-suite.yaml'))).toMatch(/^forge: FORGE_BUDGETS_FILE: /);
  });
});

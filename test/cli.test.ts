import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

function forge(...args: string[]) {
  const r = spawnSync(process.execPath, ['bin/forge.mjs', ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
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
});

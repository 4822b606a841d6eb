import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export interface ForgeProcess {
  url: string;
  key: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Starts a Forge API process (test/helpers/forge-process-main.ts) with its own data dir and the given env. */
export async function startForgeProcess(env: Record<string, string>, bandsYaml?: string): Promise<ForgeProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'forge-bench-proc-'));
  const extra: Record<string, string> = { FORGE_DATA_DIR: join(dir, 'data'), FORGE_PORT: '0', FORGE_LOG_LEVEL: 'error' };
  if (bandsYaml) {
    writeFileSync(join(dir, 'bands.yaml'), bandsYaml);
    extra.FORGE_BUDGETS_FILE = join(dir, 'bands.yaml');
  }
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/forge-process-main.ts'], { env: { ...process.env, ...extra, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const rl = createInterface({ input: child.stdout! });
  const [line] = (await Promise.race([once(rl, 'line'), once(child, 'exit').then(() => { throw new Error('forge process exited before it was ready'); })])) as [string];
  rl.close();
  const { url, key } = JSON.parse(line) as { url: string; key: string };
  return {
    url,
    key,
    child,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A bands file for processes under test: global bands out of the way (1,000,000 USD, unit cap 1,000 USD)
 * and the given tenants' own bands (the rest inherited from global).
 */
export function bandsYaml(tenants: Record<string, Record<string, number>>): string {
  const lines = ['global:', '  B_day_soft: 1000000', '  B_day_hard: 1000000', '  B_week_soft: 1000000', '  B_week_hard: 1000000', '  B_run_cap: 1000000', '  B_unit_cap: 1000', 'tenants:'];
  for (const [tenant, bands] of Object.entries(tenants)) {
    lines.push(`  ${tenant}:`);
    for (const [k, v] of Object.entries(bands)) lines.push(`    ${k}: ${v}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * A pricing file where a task costs its evaluation fee and compute only (CPU at 0.40 USD an hour, no storage,
 * no LLM models, a fixed native price): the totals of a test follow from its events by hand.
 */
export const PLAIN_PRICING =
  'compute:\n  environments:\n    cpu: "0.40"\nstorage:\n  gb_stored: "0"\n  gb_month_usd: "0"\n  expected_tasks_day: 1\nllm:\n  models: {}\nnative_price:\n  source: fixed\n  usd: "2500"\n';

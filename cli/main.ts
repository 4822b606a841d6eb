import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { COMPONENTS, CostModelError, microsToUsd, operationCost, parseBandsConfig } from '../rules/index.ts';

import { CliInputError, extraCommands, type Out } from './registry.ts';

export { CliInputError };
const stdio: Out = { log: (s) => process.stdout.write(s + '\n'), err: (s) => process.stderr.write(s + '\n') };

function buildProgram(out: Out, setCode: (c: number) => void): Command {
  const program = new Command('forge')
    .description('Forge: the cost control plane for AI-agent task platforms')
    .exitOverride()
    .configureOutput({ writeOut: (s) => out.log(s.trimEnd()), writeErr: (s) => out.err(s.trimEnd()) })
    .showHelpAfterError(false);

  const budgets = program.command('budgets').description('budget bands files');
  budgets
    .command('check')
    .argument('<file>', 'a budget bands YAML file (e.g. config/pilot-budgets.yaml)')
    .description('validate a budget bands file')
    .action((file: string) => {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (e) {
        throw new CliInputError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      const book = parseBandsConfig(text, file);
      out.log(`${file}: ok (${book.explicit.size} scope${book.explicit.size === 1 ? '' : 's'}: ${[...book.explicit.keys()].join(', ')})`);
    });

  program
    .command('cost')
    .description('print the cost components of one operation (USD)')
    .addOption(new Option('--rli <usd>', 'C_rli_eval, USD per evaluation').default('0'))
    .addOption(new Option('--gas-used <units>', 'G_used, gas units').default('0'))
    .addOption(new Option('--gas-price-gwei <gwei>', 'P_gas, gwei').default('0'))
    .addOption(new Option('--native-usd <usd>', 'P_native_usd, USD per native token').default('0'))
    .addOption(new Option('--hours <h>', 'H_task, hours').default('0'))
    .addOption(new Option('--compute-hour-usd <usd>', 'C_compute_hour, USD per hour').default('0'))
    .addOption(new Option('--gb-stored <gb>', 'GB_stored').default('0'))
    .addOption(new Option('--storage-gb-month-usd <usd>', 'C_storage_gb_month, USD per GB-month').default('0'))
    .addOption(new Option('--expected-tasks-day <n>', 'expected tasks in the day (storage allocation)').default('0'))
    .option('--json', 'print JSON')
    .action((o: Record<string, string | boolean>) => {
      const n = Number(o.expectedTasksDay);
      if (!Number.isInteger(n) || n < 0) throw new CliInputError(`--expected-tasks-day: must be a whole number >= 0, got "${String(o.expectedTasksDay)}"`);
      const flags: Record<string, string> = {
        rliEvalUsd: '--rli', gasUsed: '--gas-used', gasPriceGwei: '--gas-price-gwei', nativeUsd: '--native-usd',
        taskHours: '--hours', computeHourUsd: '--compute-hour-usd', gbStored: '--gb-stored', storageGbMonthUsd: '--storage-gb-month-usd',
      };
      const c = withFlagNames(flags, () => operationCost({
        rliEvalUsd: String(o.rli),
        gasUsed: String(o.gasUsed),
        gasPriceGwei: String(o.gasPriceGwei),
        nativeUsd: String(o.nativeUsd),
        taskHours: String(o.hours),
        computeHourUsd: String(o.computeHourUsd),
        gbStored: String(o.gbStored),
        storageGbMonthUsd: String(o.storageGbMonthUsd),
        expectedTasksDay: n,
      }));
      // Every component but LLM tokens (no token flags here), then the day's storage and the total.
      const rows: Array<[string, number]> = [...COMPONENTS.filter((k) => k !== 'llm').map((k): [string, number] => [k, c[k]]), ['storage_day', c.storageDay], ['total', c.total]];
      if (o.json) out.log(JSON.stringify(Object.fromEntries(rows.map(([k, v]) => [`${k}_usd`, microsToUsd(v)]))));
      else for (const [k, v] of rows) out.log(`${k.padEnd(12)} ${microsToUsd(v)}`);
    });

  for (const register of extraCommands) register(program, out, setCode);
  return program;
}

function withFlagNames<T>(flags: Record<string, string>, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof CostModelError) throw new CliInputError(`${flags[e.field] ?? e.field}: ${e.message.slice(e.field.length + 2)}`);
    throw e;
  }
}

const INPUT_ERRORS = new Set(['FORGE_ERR_CLI_INPUT', 'FORGE_ERR_BANDS_CONFIG', 'FORGE_ERR_COST_INPUT', 'FORGE_ERR_MONEY', 'FORGE_ERR_CONFIG', 'FORGE_ERR_BILLING_CONFIG', 'FORGE_ERR_VAULT_CONFIG', 'FORGE_ERR_PRICING_CONFIG', 'FORGE_ERR_ALERTS_CONFIG', 'FORGE_ERR_SUITE_CONFIG', 'FORGE_ERR_RUNNER_CONFIG']);

/** Runs the CLI; returns the exit code (0 ok, 2 bad input or usage, 1 failure). */
export async function main(argv: string[], out: Out = stdio): Promise<number> {
  await import('./commands.ts');
  await import('./run.ts');
  let code = 0;
  const program = buildProgram(out, (c) => (code = c));
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) return 0; // --help, --version
      return 2; // commander already printed one line
    }
    const c = (e as { code?: unknown }).code;
    if (e instanceof CliInputError || (typeof c === 'string' && INPUT_ERRORS.has(c))) {
      out.err(`forge: ${(e as Error).message}`);
      return 2;
    }
    out.err(`forge: ${(e as Error).message ?? String(e)}`);
    return 1;
  }
}

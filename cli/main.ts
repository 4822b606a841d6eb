import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { COMPONENTS, computeCost, CostModelError, gasCost, microsToUsd, MoneyError, operationCost, parseBandsConfig, rliCost, storageDayCost, storageOpCost } from '../rules/index.ts';

import { CliInputError, extraCommands, type Out } from './registry.ts';

export { CliInputError };
const stdio: Out = { log: (s) => process.stdout.write(s + '\n'), err: (s) => process.stderr.write(s + '\n') };

function buildProgram(out: Out, setCode: (c: number) => void): Command {
  const program = new Command('forge')
    .description('Forge: the cost control plane for AI-agent task platforms')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => out.log(s.trimEnd()),
      writeErr: (s) => out.err(s.trimEnd()),
      // One line, in the CLI's own voice: "forge: unknown option '--suit' (did you mean --suite?)".
      outputError: (s, write) => write(oneLine(s)),
    })
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
    .description('print the cost components of one operation (USD); give the inputs of at least one component')
    .option('--rli <usd>', 'evaluation fee, USD per evaluation')
    .option('--gas-used <units>', 'gas units of the on-chain call (with --gas-price-gwei and --native-usd)')
    .option('--gas-price-gwei <gwei>', 'gas price, gwei')
    .option('--native-usd <usd>', 'USD per native token')
    .option('--hours <h>', 'task runtime, hours (with --compute-hour-usd)')
    .option('--compute-hour-usd <usd>', 'compute price, USD per hour')
    .option('--gb-stored <gb>', 'GB stored (with --storage-gb-month-usd)')
    .option('--storage-gb-month-usd <usd>', 'storage price, USD per GB-month')
    .addOption(new Option('--expected-tasks-day <n>', 'expected tasks in the day (storage allocation)').default('0'))
    .option('--json', 'print JSON')
    .action((o: Record<string, string | boolean | undefined>) => {
      const n = Number(o.expectedTasksDay);
      if (!/^\d+$/.test(String(o.expectedTasksDay)) || !Number.isSafeInteger(n)) throw new CliInputError(`--expected-tasks-day: must be a whole number >= 0, got "${String(o.expectedTasksDay)}"`);
      const v = (k: string): string => (typeof o[k] === 'string' ? o[k] : '0');
      const given = COST_PARTS.filter((p) => p.flags.some(([k]) => o[k] !== undefined));
      if (given.length === 0) {
        throw new CliInputError('cost: nothing to price: give --rli, --gas-used with --gas-price-gwei and --native-usd, --hours with --compute-hour-usd, or --gb-stored with --storage-gb-month-usd');
      }
      for (const p of given) {
        const missing = p.flags.filter(([k]) => o[k] === undefined).map(([, f]) => f);
        // A component with one of its inputs left out would print 0 USD, which reads as an answer.
        if (missing.length) throw new CliInputError(`${p.flags.filter(([k]) => o[k] !== undefined).map(([, f]) => f).join(', ')}: also give ${missing.join(' and ')} (the ${p.name} cost needs ${missing.length === 1 ? 'it' : 'them'})`);
      }
      const inputs = {
        rliEvalUsd: v('rli'),
        gasUsed: v('gasUsed'),
        gasPriceGwei: v('gasPriceGwei'),
        nativeUsd: v('nativeUsd'),
        taskHours: v('hours'),
        computeHourUsd: v('computeHourUsd'),
        gbStored: v('gbStored'),
        storageGbMonthUsd: v('storageGbMonthUsd'),
        expectedTasksDay: n,
      };
      // Each component on its own first, so a refused or out-of-range value is reported with its flags.
      for (const p of COST_PARTS) {
        try {
          p.price(inputs);
        } catch (e) {
          const flags = p.flags.map(([, f]) => f);
          if (e instanceof CostModelError) throw new CliInputError(`${COST_FLAG[e.field] ?? flags.join(', ')}: ${e.reason}`);
          if (e instanceof MoneyError) throw new CliInputError(`${flags.join(', ')}: the ${p.name} cost is out of range (at most ${microsToUsd(Number.MAX_SAFE_INTEGER)} USD)`);
          throw e;
        }
      }
      const c = operationCost(inputs);
      // Every component but LLM tokens (no token flags here), then the day's storage and the total.
      const rows: Array<[string, number]> = [...COMPONENTS.filter((k) => k !== 'llm').map((k): [string, number] => [k, c[k]]), ['storage_day', c.storageDay], ['total', c.total]];
      if (o.json) out.log(JSON.stringify(Object.fromEntries(rows.map(([k, v]) => [`${k}_usd`, microsToUsd(v)]))));
      else for (const [k, v] of rows) out.log(`${k.padEnd(12)} ${microsToUsd(v)}`);
    });

  for (const register of extraCommands) register(program, out, setCode);
  mandatoryAfterUnknown(program);
  return program;
}

type CostInputs = Parameters<typeof operationCost>[0];

/** The components of `forge cost`, each with the flags (option key, flag) it is priced from. */
const COST_PARTS: Array<{ name: string; flags: Array<[string, string]>; price: (i: CostInputs) => number }> = [
  { name: 'evaluation', flags: [['rli', '--rli']], price: (i) => rliCost(i.rliEvalUsd) },
  { name: 'gas', flags: [['gasUsed', '--gas-used'], ['gasPriceGwei', '--gas-price-gwei'], ['nativeUsd', '--native-usd']], price: (i) => gasCost(i.gasUsed, i.gasPriceGwei, i.nativeUsd) },
  { name: 'compute', flags: [['hours', '--hours'], ['computeHourUsd', '--compute-hour-usd']], price: (i) => computeCost(i.taskHours, i.computeHourUsd) },
  {
    name: 'storage',
    flags: [['gbStored', '--gb-stored'], ['storageGbMonthUsd', '--storage-gb-month-usd']],
    price: (i) => storageDayCost(i.gbStored, i.storageGbMonthUsd) + storageOpCost(i.gbStored, i.storageGbMonthUsd, i.expectedTasksDay),
  },
];

/** The cost model's input names as the user typed them. */
const COST_FLAG: Record<string, string> = {
  rliEvalUsd: '--rli', gasUsed: '--gas-used', gasPriceGwei: '--gas-price-gwei', nativeUsd: '--native-usd',
  taskHours: '--hours', computeHourUsd: '--compute-hour-usd', gbStored: '--gb-stored', storageGbMonthUsd: '--storage-gb-month-usd',
  expectedTasksDay: '--expected-tasks-day',
};

/** Commander's error text as one line: "error: x\n(Did you mean y?)" -> "forge: x (did you mean y?)". */
function oneLine(s: string): string {
  return `${s.trim().replace(/^error: /, 'forge: ').replace(/\s*\n\s*\(Did you mean/g, ' (did you mean').replace(/\s*\n\s*/g, ' ')}\n`;
}

/**
 * Commander checks required options before unknown ones, so `--suit x` would be reported as a missing
 * `--suite`. Required options are checked here after the unknown-option check instead (preAction).
 */
function mandatoryAfterUnknown(cmd: Command): void {
  const required = cmd.options.filter((o) => o.mandatory);
  for (const o of required) o.mandatory = false;
  if (required.length) {
    cmd.hook('preAction', (self) => {
      const missing = required.find((o) => self.getOptionValue(o.attributeName()) === undefined);
      if (missing) self.error(`error: required option ${missing.flags} not given`, { code: 'commander.missingMandatoryOptionValue', exitCode: 2 });
    });
  }
  for (const c of cmd.commands) mandatoryAfterUnknown(c);
}

/** `forge` alone: what a person needs to take the next step, not the whole help. */
const SHORT_USAGE = [
  'usage: forge <command> [options]   (commands: start, run, keys, budgets, cost, runner)',
  'first steps: npx forge keys create --name ops --role admin, then npx forge run --suite config/sample-suite.yaml',
  'forge --help lists every command; forge <command> --help its options',
];

const INPUT_ERRORS = new Set(['FORGE_ERR_CLI_INPUT', 'FORGE_ERR_BANDS_CONFIG', 'FORGE_ERR_COST_INPUT', 'FORGE_ERR_MONEY', 'FORGE_ERR_CONFIG', 'FORGE_ERR_BILLING_CONFIG', 'FORGE_ERR_VAULT_CONFIG', 'FORGE_ERR_PRICING_CONFIG', 'FORGE_ERR_ALERTS_CONFIG', 'FORGE_ERR_SUITE_CONFIG', 'FORGE_ERR_RUNNER_CONFIG', 'FORGE_ERR_AGENT_REJECTED']);

/** Runs the CLI; returns the exit code (0 ok, 2 bad input or usage, 1 failure). */
export async function main(argv: string[], out: Out = stdio): Promise<number> {
  await import('./commands.ts');
  await import('./run.ts');
  await import('./eval.ts');
  if (argv.length === 0) {
    // Like git or npm without a command: a short usage on stderr and a usage exit code, since nothing ran.
    for (const l of SHORT_USAGE) out.err(l);
    return 2;
  }
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

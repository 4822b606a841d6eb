import { Option } from 'commander';
import { usdToMicros, microsToUsd, runScope, tenantScope, type StateChange } from '../rules/index.ts';
import type { HaltBus } from '../guard/index.ts';
import type { SuiteProgress, SuiteReport } from '../runner/index.ts';
import { addCommand, CliInputError, type Out } from './registry.ts';

interface RunOptions {
  suite: string;
  tenant?: string;
  run?: string;
  concurrency: string;
  api?: string;
  wait?: boolean;
}

/** One line per thing a person watching the suite wants to see. */
function progressLine(p: SuiteProgress): string | undefined {
  switch (p.kind) {
    case 'start':
      return undefined;
    case 'end': {
      const o = p.outcome;
      const cost = o.emitted ? `${microsToUsd(o.recordedMicros)} USD recorded` : `${microsToUsd(o.costMicros)} USD NOT recorded (${o.notRecorded?.reason ?? 'not stored'})`;
      return `task ${o.taskId}: ${o.status}${o.reason === 'completed' ? '' : ` (${o.reason})`}, ${cost}`;
    }
    case 'postponed':
      // A postponed task is tried again; the tasks that never start are listed once, at the end.
      return undefined;
    case 'intake':
      return p.open ? 'intake: open' : `intake: closed${p.cause ? ` (${p.cause.scope} ${p.cause.state}: ${p.cause.reason})` : ''}`;
    case 'hung':
      return `task ${p.hung.task.taskId}: silent for ${p.hung.silentMs} ms, killed`;
  }
}

function summary(r: SuiteReport, out: Out): void {
  // Once per task; many left by the same cause (a halt, a failure) make one line.
  const byReason = new Map<string, SuiteReport['notStarted']>();
  for (const n of r.notStarted) byReason.set(n.reason, [...(byReason.get(n.reason) ?? []), n]);
  for (const [reason, ns] of byReason) {
    if (ns.length <= 3) for (const n of ns) out.log(`task ${n.taskId}: not started (${reason})`);
    else out.log(`${ns.length} tasks not started (${reason})`);
  }
  const ok = r.outcomes.filter((o) => o.status === 'success').length;
  const lost = r.notRecorded.length
    ? `; ${r.notRecorded.length} cost event${r.notRecorded.length === 1 ? '' : 's'} NOT recorded (${microsToUsd(r.notRecorded.reduce((s, x) => s + x.costMicros, 0))} USD at the runner's prices)`
    : '';
  out.log(`suite ${r.suite} (tenant ${r.tenantId}, run ${r.runId}): ${r.outcomes.length} tasks ran (${ok} succeeded), ${r.notStarted.length} not started, ${r.recordedUsd} USD recorded${lost}`);
  if (r.haltedBy) out.log(`halted by ${r.haltedBy.scope ?? 'a denial'}${r.haltedBy.state ? ` ${r.haltedBy.state}` : ''}: ${r.haltedBy.reason}`);
  if (r.terminated) out.log('the run was terminated (EMERGENCY_STOP): tasks in flight were aborted');
}

/** A suite that stopped on a failure (not a halt) did not do what it was asked: one line, non-zero exit. */
function failed(r: SuiteReport): Error | undefined {
  if (!r.failure) return undefined;
  if (r.failure.code === 'FORGE_ERR_API_KEY_REFUSED') return new CliInputError(`FORGE_API_KEY: ${r.failure.message}`);
  const lost = r.notRecorded.length ? `; ${r.notRecorded.length} task${r.notRecorded.length === 1 ? '' : 's'} ran whose cost is not recorded` : '';
  return new Error(`${r.failure.message}${lost}`);
}

/** Where the CLI reports a background error: once per distinct line, and not what the report shows anyway. */
function errorReporter(out: Out): (e: unknown, where: string) => void {
  const seen = new Set<string>();
  return (e, where) => {
    const code = (e as { code?: unknown }).code;
    // A refused event is in its task's line and the summary; a refused key ends the run with one line.
    if (where === 'emit event' || code === 'FORGE_ERR_API_KEY_REFUSED' || code === 'FORGE_ERR_ADMISSION_PROTOCOL') return;
    const line = `forge: ${where}: ${e instanceof Error ? e.message : String(e)}`;
    if (seen.has(line)) return;
    seen.add(line);
    out.err(line);
  };
}

addCommand((program, out) => {
  program
    .command('run')
    .description('run a task suite through the guardrail (embedded Forge in this process, or --api URL) and watch the budgets fire')
    .requiredOption('--suite <file>', 'a suite YAML file (e.g. config/sample-suite.yaml)')
    .option('--tenant <id>', "run under this tenant (default: the suite's)")
    .option('--run <id>', "run id (default: the suite's)")
    .addOption(new Option('--concurrency <n>', 'tasks at once').default('4'))
    .option('--api <url>', 'a running Forge API (admissions and events over HTTP with FORGE_API_KEY; halts over Redis when FORGE_REDIS_URL is set)')
    .option('--wait', 'on a halt, keep the remaining tasks queued until it is lifted (default: stop)')
    .action(async (o: RunOptions) => {
      const concurrency = Number(o.concurrency);
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) throw new CliInputError(`--concurrency: must be a whole number 1-256, got "${o.concurrency}"`);
      if (o.tenant !== undefined && !/^[A-Za-z0-9._-]{1,64}$/.test(o.tenant)) throw new CliInputError('--tenant: must be 1-64 letters, digits, dot, dash or underscore');
      if (o.run !== undefined && !/^[A-Za-z0-9._:-]{1,128}$/.test(o.run)) throw new CliInputError('--run: must be 1-128 letters, digits, dot, colon, dash or underscore');
      const runner = await import('../runner/index.ts');
      const suite = runner.loadSuite(o.suite); // a bad file is FORGE_ERR_SUITE_CONFIG: exit 2 (cli/main.ts)

      const stopping = new AbortController();
      const onSignal = () => stopping.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const common = {
        suite,
        concurrency,
        ...(o.tenant ? { tenantId: o.tenant } : {}),
        ...(o.run ? { runId: o.run } : {}),
        whenHalted: o.wait ? ('wait' as const) : ('stop' as const),
        signal: stopping.signal,
        onProgress: (p: SuiteProgress) => {
          const line = progressLine(p);
          if (line) out.log(line);
        },
        onError: errorReporter(out),
      };
      const watch = (c: StateChange) => out.log(`guardrail: ${c.scope} ${c.previous} -> ${c.state} (${c.reason})`);
      try {
        if (o.api) {
          let base: URL;
          try {
            base = new URL(o.api);
          } catch {
            throw new CliInputError(`--api: not a URL: "${o.api}"`);
          }
          const apiKey = process.env.FORGE_API_KEY;
          if (!apiKey) throw new CliInputError('FORGE_API_KEY: set it to a runner key of the API given with --api');
          const redisUrl = process.env.FORGE_REDIS_URL;
          const guard = await import('../guard/index.ts');
          const bus: HaltBus = redisUrl
            ? new guard.RedisHaltBus({ url: redisUrl, ...(process.env.FORGE_REDIS_PREFIX ? { keyPrefix: process.env.FORGE_REDIS_PREFIX } : {}), onError: (e) => common.onError(e, 'halt bus') })
            : new guard.InProcessHaltBus();
          const admission = new runner.HttpAdmissionClient({ baseUrl: base.href, apiKey });
          const tenantId = o.tenant ?? suite.tenantId;
          const scopes = [tenantScope(tenantId), runScope(tenantId, o.run ?? suite.runId)];
          // Before any task runs: the API answers and takes the key (else one line, not a retry loop).
          try {
            await admission.scope(scopes[0]!, stopping.signal);
          } catch (e) {
            const code = (e as { code?: unknown }).code;
            if (code === 'FORGE_ERR_API_KEY_REFUSED') throw new CliInputError(`FORGE_API_KEY: refused by ${base.origin}: ${(e as Error).message.replace(/^[^:]*: GET \S+: /, '')}`);
            if (code === 'FORGE_ERR_UNKNOWN_TENANT') throw new CliInputError(`--tenant: ${base.origin} does not know tenant "${tenantId}": add it to the bands file or create it (POST /v1/tenants, an admin key)`);
            if (code === 'FORGE_ERR_ADMISSION_UNAVAILABLE') throw new Error(`--api ${base.origin}: not reachable: ${(e as Error).message.replace(/^[^:]*: GET \S+: /, '')}`);
            throw new Error(`--api ${base.origin}: not a Forge API that answers GET /v1/guardrail: ${(e as Error).message}`);
          }
          const unwatch = bus.subscribe(watch);
          try {
            await bus.ready();
            const report = await runner.runSuite({
              ...common,
              bus,
              admission,
              events: new runner.HttpEventEmitterClient({ baseUrl: base.href, apiKey }),
            });
            summary(report, out);
            if (!report.failure || report.failure.code !== 'FORGE_ERR_API_KEY_REFUSED') {
              // What the API holds after the run: its state and spend for the tenant and the run.
              for (const scope of scopes) {
                const v = await admission.scope(scope).catch(() => undefined);
                if (v) out.log(`${scope}: ${v.state}, ${scope.startsWith('run:') ? `run ${v.runUsd}` : `day ${v.dayUsd}`} USD`);
              }
            }
            const f = failed(report);
            if (f) throw f;
          } finally {
            unwatch();
            await bus.close();
          }
          return;
        }
        // Embedded: this process runs Forge (store, collector, rules, API) and the suite against it.
        const { startForge } = await import('./forge-process.ts');
        // Any free port unless FORGE_PORT says otherwise (a `forge start` may hold 8080).
        const forge = await startForge({ env: { ...process.env, FORGE_PORT: process.env.FORGE_PORT ?? '0' } }).catch((e: unknown) => {
          if ((e as { code?: unknown }).code !== 'FORGE_ERR_STORE_LOCKED') throw e;
          // `npm start` (forge start) owns the store: run against it over HTTP instead.
          throw new Error(`${(e as Error).message.replace(/; one process owns it at a time$/, '')}: against a running \`forge start\`, use --api http://127.0.0.1:${process.env.FORGE_PORT ?? '8080'} with FORGE_API_KEY set to a runner key (or point FORGE_DATA_DIR elsewhere)`);
        });
        let temp: { id: string; key: string } | undefined;
        const unwatch = forge.bus.subscribe(watch);
        try {
          temp = await forge.keys.create({ name: `forge run ${suite.name} (temporary)`, roles: ['runner'], tenantId: o.tenant ?? suite.tenantId });
          out.log(`forge: embedded Forge listening on ${forge.url} (burn page: ${forge.url}/)`);
          const report = await runner.runSuite({
            ...common,
            bus: forge.bus,
            admission: runner.guardrailAdmissionClient(forge.guardrail, usdToMicros),
            events: new runner.HttpEventEmitterClient({ baseUrl: forge.url, apiKey: temp.key }),
          });
          summary(report, out);
          for (const scope of [tenantScope(report.tenantId), runScope(report.tenantId, report.runId)]) {
            const t = forge.guardrail.totals(scope);
            out.log(`${scope}: ${forge.guardrail.effectiveState(scope)}, ${scope.startsWith('run:') ? `run ${microsToUsd(t.runMicros)}` : `day ${microsToUsd(t.dayMicros)}`} USD`);
          }
          const f = failed(report);
          if (f) throw f;
        } finally {
          unwatch();
          if (temp) await forge.keys.revoke(temp.id);
          await forge.close();
        }
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
});

addCommand((program, out) => {
  program
    .command('runner')
    .description('a runner process: BullMQ worker on FORGE_REDIS_URL, admissions and cost events to FORGE_API_URL, halts over Redis')
    .action(async () => {
      const runner = await import('../runner/index.ts');
      const cfg = runner.runnerConfigFromEnv(); // FORGE_ERR_RUNNER_CONFIG: exit 2 (cli/main.ts)
      const started = await runner.startRunner(cfg, {
        onError: (e, where) => out.err(`forge runner: ${where}: ${e instanceof Error ? e.message : String(e)}`),
        onIntake: (open, cause) => out.log(open ? 'forge runner: intake open' : `forge runner: intake closed${cause ? ` (${cause.scope} ${cause.state}: ${cause.reason})` : ''}`),
      });
      out.log(`forge runner: taking tasks from queue ${cfg.FORGE_RUNNER_QUEUE} (concurrency ${cfg.FORGE_RUNNER_CONCURRENCY}), API ${cfg.FORGE_API_URL}`);
      await new Promise<void>((resolve) => {
        let stopping = false;
        const stop = (sig: string) => {
          if (stopping) return;
          stopping = true;
          out.log(`forge runner: ${sig}: finishing tasks in flight`);
          started.close().then(resolve, (e: unknown) => {
            out.err(`forge runner: shutdown failed: ${e instanceof Error ? e.message : String(e)}`);
            resolve();
          });
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
      out.log('forge runner: stopped');
    });
});

import { computeHourUsd } from '../collector/index.ts';
import { EvalEngine, EvalRunLauncher, judgeConfigFromEnv, LocalProcessExecutor, openAiJudge, type AgentExecutor, type AgentStore, type EvalResults, type EvalSuiteRegistry, type Judge } from '../eval/index.ts';
import { usdToMicros } from '../rules/index.ts';
import { HttpEventEmitterClient, type TaskFinalizedEvent } from '../runner/index.ts';
import type { KeyStore } from '../api/index.ts';
import type { Pricing } from '../collector/index.ts';
import type { Guardrail, HaltBus } from '../guard/index.ts';

/** What the eval engine uses of a running Forge (cli/forge-process.ts's RunningForge has it). */
export interface EmbeddedForge {
  url: string;
  agents: AgentStore;
  evalResults: EvalResults;
  guardrail: Guardrail;
  bus: HaltBus;
  pricing: Pricing;
  keys: Pick<KeyStore, 'create' | 'revoke'>;
}

export interface EmbeddedEvalOptions {
  /** A runner key of the tenant: the cost events go to the collector (POST /v1/events) with it. */
  apiKey: string;
  /** The suite's environment, for the admission estimate's compute price. */
  environment: string;
  executor?: AgentExecutor;
  judge?: Judge;
  signal?: AbortSignal;
  onError?: (e: unknown, where: string) => void;
}

/**
 * The eval engine on an embedded Forge: agents and results in its store, admissions on its guardrail, halts on
 * its bus, cost events through its collector (so they are priced, stored once by id, and counted by the guard
 * like any runner's).
 */
export function embeddedEvalEngine(forge: EmbeddedForge, o: EmbeddedEvalOptions): EvalEngine {
  const emitter = new HttpEventEmitterClient({ baseUrl: forge.url, apiKey: o.apiKey });
  const hourUsd = computeHourUsd(forge.pricing, o.environment);
  return new EvalEngine({
    agents: forge.agents,
    results: forge.evalResults,
    admissions: forge.guardrail,
    bus: forge.bus,
    costs: async (e) => {
      const r = await emitter.emit(e as TaskFinalizedEvent, o.signal);
      return { totalMicros: r ? usdToMicros(r.totalUsd) : 0, duplicate: r?.duplicate ?? false };
    },
    executor: o.executor ?? new LocalProcessExecutor(),
    ...(o.judge ? { judge: o.judge } : {}),
    ...(hourUsd ? { computeHourMicros: usdToMicros(hourUsd) } : {}),
    ...(o.onError ? { onError: o.onError } : {}),
  });
}

export interface EmbeddedLauncherOptions {
  suites: EvalSuiteRegistry;
  /** Runs at once in this process. */
  maxRuns: number;
  /** The judge's settings (FORGE_JUDGE_*, see judgeConfigFromEnv); unset: judge checks skipped. */
  env: NodeJS.ProcessEnv;
  onError: (e: unknown, where: string) => void;
}

/**
 * Eval runs started over the API (POST /v1/eval/runs), run in the server process: each with a temporary
 * runner key of its tenant (revoked when the run ends), the local executor and the judge from the env. The
 * Forge is read through `forge()` when a run starts: the routes are registered before it exists.
 */
export function embeddedEvalLauncher(forge: () => EmbeddedForge, o: EmbeddedLauncherOptions): EvalRunLauncher {
  const judgeCfg = judgeConfigFromEnv(o.env);
  const judge = judgeCfg ? openAiJudge(judgeCfg) : undefined;
  return new EvalRunLauncher({
    suites: o.suites,
    agents: { get: (tenant, agentId) => forge().agents.get(tenant, agentId) },
    results: { run: (tenant, runId) => forge().evalResults.run(tenant, runId) },
    maxRuns: o.maxRuns,
    onError: o.onError,
    run: async (r, suite, signal) => {
      const f = forge();
      const temp = await f.keys.create({ name: `eval run ${r.runId} (temporary)`, roles: ['runner'], tenantId: r.tenantId });
      try {
        const engine = embeddedEvalEngine(f, { apiKey: temp.key, environment: suite.environment, executor: new LocalProcessExecutor(), ...(judge ? { judge } : {}), signal, onError: o.onError });
        await engine.run({ tenantId: r.tenantId, runId: r.runId, suite, agentId: r.agentId, concurrency: r.concurrency, signal });
      } finally {
        await f.keys.revoke(temp.id);
      }
    },
  });
}

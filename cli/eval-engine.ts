import { computeHourUsd } from '../collector/index.ts';
import { EvalEngine, LocalProcessExecutor, type AgentExecutor, type Judge } from '../eval/index.ts';
import { usdToMicros } from '../rules/index.ts';
import { HttpEventEmitterClient, type TaskFinalizedEvent } from '../runner/index.ts';
import type { RunningForge } from './forge-process.ts';

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
export function embeddedEvalEngine(forge: RunningForge, o: EmbeddedEvalOptions): EvalEngine {
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

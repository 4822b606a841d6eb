import { z } from 'zod';
import { computeHourUsd, loadPricing, PlatformMetrics } from '../collector/index.ts';
import { RedisHaltBus } from '../guard/index.ts';
import { parseScope, type ScopeKey } from '../rules/index.ts';
import { HttpAdmissionClient } from './admission.ts';
import { HttpAlertClient } from './alert-client.ts';
import { BullTaskWorker, DEFAULT_QUEUE, TaskQueue } from './bull-queue.ts';
import { RunnerError, defaultErrorHandler, type ErrorHandler } from './errors.ts';
import { HttpEventEmitterClient } from './events.ts';
import { startRunnerMetrics, type RunnerMetrics } from './metrics.ts';
import { TaskRunner, type TaskRunnerOptions } from './task-runner.ts';
import type { Pricing, TaskSpec } from './types.ts';

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const decimal = z.string().regex(/^\d+(\.\d+)?$/, 'must be a non-negative decimal number');

const envSchema = z.object({
  FORGE_REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL'),
  FORGE_REDIS_PREFIX: z.string().min(1).max(64).default('forge:'),
  FORGE_API_URL: z.string().url().default('http://127.0.0.1:8080'),
  FORGE_API_KEY: z.string().min(1, 'is required (an API key with the runner role)'),
  FORGE_RUNNER_QUEUE: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/).default(DEFAULT_QUEUE),
  FORGE_RUNNER_CONCURRENCY: int(1, 256).default(2),
  FORGE_RUNNER_HEARTBEAT_TIMEOUT_MS: int(100, 86_400_000).default(60_000),
  FORGE_RUNNER_INTAKE_SCOPES: z
    .string()
    .default('')
    .transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean))
    .refine((xs) => xs.every((x) => parseScope(x) !== undefined), 'must be comma-separated scopes (global, tenant:<id>, run:<tenant>/<run>)'),
  FORGE_RUNNER_GAS_PRICE_GWEI: decimal.default('0'),
  FORGE_PRICING_FILE: z.string().optional(),
  /** Serve the runner's /metrics on this port (0: any free port); unset: no server. */
  FORGE_RUNNER_METRICS_PORT: int(0, 65_535).optional(),
  FORGE_RUNNER_METRICS_HOST: z.string().min(1).default('127.0.0.1'),
  /** Liveness beat (forge_runner_heartbeats_total, queue depth, in flight), ms. */
  FORGE_RUNNER_BEAT_MS: int(100, 600_000).default(5000),
});

export type RunnerConfig = z.output<typeof envSchema>;

/** Parses the runner's environment once, at start; the error names the variable. */
export function runnerConfigFromEnv(env: NodeJS.ProcessEnv = process.env): RunnerConfig {
  const picked = Object.fromEntries(Object.entries(env).filter(([k, v]) => k.startsWith('FORGE_') && v !== ''));
  const r = envSchema.safeParse(picked);
  if (!r.success) {
    const i = r.error.issues[0]!;
    const field = String(i.path[0]);
    throw new RunnerError('FORGE_ERR_RUNNER_CONFIG', `${field}: ${i.message}`, { field });
  }
  return r.data;
}

export interface StartedRunner {
  runner: TaskRunner;
  worker: BullTaskWorker;
  bus: RedisHaltBus;
  /** The runner's platform metrics (and its /metrics URL when FORGE_RUNNER_METRICS_PORT is set). */
  metrics: RunnerMetrics;
  close(opts?: { abort?: boolean }): Promise<void>;
}

/**
 * A production runner process: BullMQ worker on FORGE_REDIS_URL, halt bus on the same Redis, admissions
 * and cost events over HTTP to the API. Prices come from the collector's pricing file (compute by the
 * task's environment). `hooks` adds alert callbacks (onHung, onRunTerminated, ...).
 */
export async function startRunner(cfg: RunnerConfig, hooks: Partial<TaskRunnerOptions> & { onError?: ErrorHandler } = {}): Promise<StartedRunner> {
  const onError = hooks.onError ?? defaultErrorHandler;
  const prices = loadPricing(cfg.FORGE_PRICING_FILE);
  const native = prices.nativePrice.source === 'fixed' ? prices.nativePrice.usd : '0';
  const pricing = (task: TaskSpec): Pricing => ({
    computeHourUsd: computeHourUsd(prices, task.environment ?? '') ?? '0',
    gasPriceGwei: cfg.FORGE_RUNNER_GAS_PRICE_GWEI,
    nativeUsd: native,
    chainId: prices.chain?.chainId ?? 1,
    llm: prices.llm,
  });
  const bus = new RedisHaltBus({ url: cfg.FORGE_REDIS_URL, keyPrefix: cfg.FORGE_REDIS_PREFIX, onError });
  const platform = new PlatformMetrics({ service: 'forge-runner' });
  const queueName = cfg.FORGE_RUNNER_QUEUE;
  // A hung task pages on-call through the API's dispatcher (deduplicated there per task and day).
  const alerts = new HttpAlertClient({ baseUrl: cfg.FORGE_API_URL, apiKey: cfg.FORGE_API_KEY });
  const runner = new TaskRunner({
    bus,
    admission: new HttpAdmissionClient({ baseUrl: cfg.FORGE_API_URL, apiKey: cfg.FORGE_API_KEY }),
    events: new HttpEventEmitterClient({ baseUrl: cfg.FORGE_API_URL, apiKey: cfg.FORGE_API_KEY }),
    pricing,
    intakeScopes: cfg.FORGE_RUNNER_INTAKE_SCOPES as ScopeKey[],
    heartbeatTimeoutMs: cfg.FORGE_RUNNER_HEARTBEAT_TIMEOUT_MS,
    ...hooks,
    onHung: (h) => {
      hooks.onHung?.(h);
      alerts.reportHung(h).catch((e: unknown) => onError(e, 'hung task alert'));
    },
    // A task whose in-flight cost passes 3 x its type's normal cost is killed; the API audits and alerts.
    costCeiling: (task) => alerts.costCeiling(task),
    onAnomaly: (a) => {
      hooks.onAnomaly?.(a);
      alerts.reportCostKill(a).catch((e: unknown) => onError(e, 'cost anomaly report'));
    },
    onKill: (task, kind) => {
      platform.recordKill(queueName, kind);
      hooks.onKill?.(task, kind);
    },
    onError,
  });
  const worker = new BullTaskWorker(runner, { redisUrl: cfg.FORGE_REDIS_URL, queueName, concurrency: cfg.FORGE_RUNNER_CONCURRENCY, onError });
  await worker.start();
  const depthQueue = new TaskQueue({ redisUrl: cfg.FORGE_REDIS_URL, queueName });
  const metrics = await startRunnerMetrics({
    platform,
    queue: queueName,
    concurrency: cfg.FORGE_RUNNER_CONCURRENCY,
    queueDepth: async () => {
      const c = await depthQueue.queue.getJobCounts('waiting', 'delayed', 'prioritized');
      return (c.waiting ?? 0) + (c.delayed ?? 0) + (c.prioritized ?? 0);
    },
    inFlight: () => runner.inFlightCount,
    intakeOpen: () => runner.intakeOpen,
    beatMs: cfg.FORGE_RUNNER_BEAT_MS,
    ...(cfg.FORGE_RUNNER_METRICS_PORT !== undefined ? { port: cfg.FORGE_RUNNER_METRICS_PORT, host: cfg.FORGE_RUNNER_METRICS_HOST } : {}),
    onError,
  });
  return {
    runner,
    worker,
    bus,
    metrics,
    async close(opts = {}) {
      await metrics.close();
      await worker.close(opts);
      await depthQueue.close();
      await bus.close();
    },
  };
}

/**
 * The producer SDK for task runners: one OpenTelemetry log record per finalized task, batched and sent
 * over OTLP/HTTP to Forge's /v1/logs.
 *
 *   const forge = createTaskCostEmitter({ url: 'http://forge:8080', headers: { authorization: 'Bearer ...' } });
 *   forge.emitTaskCost({ tenant_id: 'acme', run_id: 'r1', task_id: 't7', task_type: 'eval', environment: 'gpu-a10',
 *     status: 'success', rli_eval_usd: '0.10', task_hours: '0.25', gas: { tx_hash, chain_id: 1 } });
 *   await forge.shutdown(); // flushes what is still queued
 *
 * Idempotency: the event_id is the caller's, or derived from (tenant, run, task, attempt), so emitting the
 * same task twice (a crashed runner re-emitting, a retried export) yields the same id and Forge counts it
 * once. The exporter retries 429/502/503/504 with backoff, resending the same records.
 */
import { createHash } from 'node:crypto';
import type { AnyValueMap } from '@opentelemetry/api-logs';
import { OTLPLogExporter as JsonExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPLogExporter as ProtoExporter } from '@opentelemetry/exporter-logs-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchLogRecordProcessor, LoggerProvider } from '@opentelemetry/sdk-logs';
import { parseTaskEvent, TASK_FINALIZED } from './event.ts';

export interface TaskCostInput {
  /** Chosen by the caller, or derived from tenant/run/task/attempt. */
  event_id?: string;
  tenant_id: string;
  run_id: string;
  task_id: string;
  task_type: string;
  model?: string;
  environment: string;
  status: 'success' | 'failed' | 'retried';
  /** Default: now. */
  finalized_at?: Date | number | string;
  /** USD; prefer decimal strings ("0.10") over binary floats. */
  rli_eval_usd: string | number;
  gas?:
    | { tx_hash: `0x${string}`; chain_id: number; from?: `0x${string}`; nonce?: number }
    | { gas_used: string | number; gas_price_gwei: string | number; chain_id?: number };
  task_hours?: string | number;
  started_at?: Date | number | string;
  ended_at?: Date | number | string;
  llm?: Array<{ model: string; input_tokens: number; output_tokens: number }>;
  /** Distinguishes repeated finalizations of one task (a retried task finalizes once per attempt). Default 1. */
  attempt?: number;
}

export interface TaskCostEmitterOptions {
  /** Forge's base URL (…/v1/logs is appended unless already there). */
  url: string;
  headers?: Record<string, string>;
  /** OTLP encoding (default protobuf). */
  protocol?: 'protobuf' | 'json';
  /** Records per export (default 512). */
  maxExportBatchSize?: number;
  /** Longest a record waits before export, ms (default 1000). */
  scheduledDelayMillis?: number;
  /** Queue bound; further records are dropped by the SDK (default 10,000). */
  maxQueueSize?: number;
  /** Per-export deadline including retries, ms (default 30,000). */
  timeoutMillis?: number;
  compression?: 'gzip' | 'none';
  /** Resource attributes, e.g. { 'service.name': 'runner-7' }. */
  resource?: Record<string, string>;
}

export class TaskCostInputError extends Error {
  readonly code = 'FORGE_ERR_VALIDATION';
  constructor(
    readonly field: string,
    reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

export interface TaskCostEmitter {
  /** Queues one finalized task; returns its event_id. Throws TaskCostInputError for an invalid event. */
  emitTaskCost(input: TaskCostInput): string;
  forceFlush(): Promise<void>;
  /** Flushes what is queued and stops. */
  shutdown(): Promise<void>;
}

/** The stable event id of a task attempt: "fx-" + 32 hex of sha256(tenant, run, task, attempt). */
export function taskEventId(tenantId: string, runId: string, taskId: string, attempt = 1): string {
  return 'fx-' + createHash('sha256').update(`${tenantId}\u0000${runId}\u0000${taskId}\u0000${attempt}`).digest('hex').slice(0, 32);
}

function time(v: Date | number | string): number | string {
  return v instanceof Date ? v.getTime() : v;
}

/** The event body as sent (snake_case map; undefined fields left out). */
export function taskCostBody(input: TaskCostInput, now = Date.now()): Record<string, unknown> {
  const { attempt, finalized_at, started_at, ended_at, event_id, ...rest } = input;
  const body: Record<string, unknown> = {
    ...rest,
    event_id: event_id ?? taskEventId(input.tenant_id, input.run_id, input.task_id, attempt ?? 1),
    finalized_at: time(finalized_at ?? now),
    ...(started_at !== undefined ? { started_at: time(started_at) } : {}),
    ...(ended_at !== undefined ? { ended_at: time(ended_at) } : {}),
  };
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
  return body;
}

export function createTaskCostEmitter(opts: TaskCostEmitterOptions): TaskCostEmitter {
  const url = /\/v1\/logs\/?$/.test(opts.url) ? opts.url : `${opts.url.replace(/\/$/, '')}/v1/logs`;
  const exporterOpts = {
    url,
    headers: opts.headers ?? {},
    timeoutMillis: opts.timeoutMillis ?? 30_000,
    ...(opts.compression ? { compression: opts.compression as never } : {}),
  };
  const exporter = opts.protocol === 'json' ? new JsonExporter(exporterOpts) : new ProtoExporter(exporterOpts);
  const provider = new LoggerProvider({
    resource: resourceFromAttributes({ 'service.name': 'forge-task-producer', ...opts.resource }),
    processors: [
      new BatchLogRecordProcessor({
        exporter,
        maxExportBatchSize: opts.maxExportBatchSize ?? 512,
        scheduledDelayMillis: opts.scheduledDelayMillis ?? 1000,
        maxQueueSize: opts.maxQueueSize ?? 10_000,
        exportTimeoutMillis: opts.timeoutMillis ?? 30_000,
      }),
    ],
  });
  const logger = provider.getLogger('forge.task-cost', '1');
  return {
    emitTaskCost(input) {
      const now = Date.now();
      const body = taskCostBody(input, now);
      // Fail in the producer, naming the field, rather than in a batch later (pricing is Forge's job).
      const p = parseTaskEvent(body, { now, maxFutureSkewMs: 300_000 });
      if (!p.ok) throw new TaskCostInputError(p.field, p.reason);
      logger.emit({
        eventName: TASK_FINALIZED,
        timestamp: p.event.finalizedAt,
        body: body as AnyValueMap,
      });
      return p.event.eventId;
    },
    forceFlush: () => provider.forceFlush(),
    shutdown: () => provider.shutdown(),
  };
}

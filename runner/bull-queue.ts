import { DelayedError, Queue, UnrecoverableError, Worker, type Job, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { blockingRedis } from '../guard/index.ts';
import { defaultErrorHandler, RunnerError, type ErrorHandler } from './errors.ts';
import type { TaskRunner } from './task-runner.ts';
import type { TaskOutcome, TaskSpec } from './types.ts';

export const DEFAULT_QUEUE = 'forge-tasks';

export interface BullQueueOptions {
  /** FORGE_REDIS_URL */
  redisUrl: string;
  /** Default 'forge-tasks'. */
  queueName?: string;
  /** BullMQ key prefix (one namespace per deployment or test). Default 'bull'. */
  prefix?: string;
}

// BullMQ's blocking commands need maxRetriesPerRequest: null; the worker reconnects by itself.
const connection = blockingRedis;

/** Adds task jobs (the producer side). */
export class TaskQueue {
  readonly queue: Queue<TaskSpec, TaskOutcome>;
  private readonly conn: Redis;

  constructor(o: BullQueueOptions) {
    this.conn = connection(o.redisUrl, 'forge-task-queue');
    this.queue = new Queue<TaskSpec, TaskOutcome>(o.queueName ?? DEFAULT_QUEUE, { connection: this.conn, prefix: o.prefix ?? 'bull' });
  }

  async add(task: TaskSpec, opts: JobsOptions = {}): Promise<Job<TaskSpec, TaskOutcome>> {
    return this.queue.add(task.taskType, task, { jobId: `${task.tenantId}.${task.runId}.${task.taskId}`.replace(/:/g, '_'), removeOnComplete: 1000, removeOnFail: 5000, ...opts });
  }

  async close(): Promise<void> {
    await this.queue.close();
    this.conn.disconnect();
  }
}

export interface BullRunnerOptions extends BullQueueOptions {
  /** Tasks run at once by this worker. Default 1. */
  concurrency?: number;
  onError?: ErrorHandler;
}

/**
 * The production runner: a BullMQ worker whose processor is the TaskRunner. A postponed task goes back
 * to the queue's delayed set (no attempt used); a task of a terminated run, or one aborted by an
 * EMERGENCY_STOP, fails without retry; other failed tasks fail normally (retried per the job's attempts).
 * The TaskRunner pauses and resumes this worker as halts come and go.
 */
export class BullTaskWorker {
  readonly worker: Worker<TaskSpec, TaskOutcome>;
  private readonly conn: Redis;
  private readonly onError: ErrorHandler;

  constructor(
    private readonly runner: TaskRunner,
    o: BullRunnerOptions,
  ) {
    if (!o.redisUrl) throw new RunnerError('FORGE_ERR_RUNNER_CONFIG', 'FORGE_REDIS_URL is required for the BullMQ runner', { field: 'FORGE_REDIS_URL' });
    this.onError = o.onError ?? defaultErrorHandler;
    this.conn = connection(o.redisUrl, 'forge-task-worker');
    this.worker = new Worker<TaskSpec, TaskOutcome>(o.queueName ?? DEFAULT_QUEUE, (job, token) => this.process(job, token), {
      connection: this.conn,
      prefix: o.prefix ?? 'bull',
      concurrency: o.concurrency ?? 1,
      autorun: false,
    });
    let last = '';
    let lastAt = 0;
    this.worker.on('error', (e) => {
      // A Redis outage makes the worker report every retry: pass on the first of a burst.
      const msg = e.message;
      if (msg === last && Date.now() - lastAt < 10_000) return;
      last = msg;
      lastAt = Date.now();
      this.onError(e, 'bullmq worker');
    });
  }

  /** Starts following the bus, then starts taking jobs (paused at once when a halt holds). */
  async start(): Promise<void> {
    await this.runner.start({ pause: () => this.worker.pause(true), resume: () => this.worker.resume() });
    if (!this.runner.intakeOpen) await this.worker.pause(true);
    this.worker.run().catch((e: unknown) => this.onError(e, 'bullmq worker run'));
    await this.worker.waitUntilReady();
  }

  private async process(job: Job<TaskSpec, TaskOutcome>, token?: string): Promise<TaskOutcome> {
    const r = await this.runner.handle(job.data, job.attemptsMade + 1);
    if (r.kind === 'postpone') {
      await job.moveToDelayed(Date.now() + r.postponed.retryAfterMs, token);
      throw new DelayedError();
    }
    if (r.kind === 'drop') throw new UnrecoverableError(`run_terminated: ${r.postponed.reason}`);
    const o = r.outcome;
    if (o.status === 'failed') {
      const msg = `${o.reason}${o.detail ? `: ${o.detail}` : ''}`;
      throw o.reason === 'aborted' ? new UnrecoverableError(msg) : new Error(msg);
    }
    return o;
  }

  /** Stops taking jobs and waits for the ones in flight (abort: fire their signals first). */
  async close(opts: { abort?: boolean } = {}): Promise<void> {
    await this.runner.close(opts);
    await this.worker.close();
    this.conn.disconnect();
  }
}

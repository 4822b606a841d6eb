import type { HandleResult, TaskRunner } from './task-runner.ts';
import type { TaskSpec } from './types.ts';

export interface InProcessQueueOptions {
  /** Tasks run at once. Default 4. */
  concurrency?: number;
  /**
   * What to do with a postponed task: hand it to `onPostpone`, which returns true to try again after
   * its delay, or false to give it up (e.g. a suite that stops at the first halt). Default: retry.
   */
  onPostpone?(task: TaskSpec, r: Exclude<HandleResult, { kind: 'done' }>): boolean;
  onResult?(task: TaskSpec, r: HandleResult): void;
}

/**
 * The embedded default's queue: tasks in memory, run by the TaskRunner with bounded concurrency.
 * Pausable like the BullMQ worker (the runner pauses it on a halt).
 */
export class InProcessTaskQueue {
  private readonly ready: TaskSpec[] = [];
  /** Postponed tasks waiting for their retry, by timer. */
  private readonly timers = new Map<NodeJS.Timeout, TaskSpec>();
  private active = 0;
  private paused = false;
  private closed = false;
  private idleWaiters: Array<() => void> = [];
  private readonly concurrency: number;

  constructor(
    private readonly runner: TaskRunner,
    private readonly o: InProcessQueueOptions = {},
  ) {
    this.concurrency = o.concurrency ?? 4;
  }

  async start(): Promise<void> {
    await this.runner.start({ pause: () => this.pause(), resume: () => this.resume() });
    if (!this.runner.intakeOpen) this.pause();
    this.pump();
  }

  add(task: TaskSpec): void {
    if (this.closed) return;
    this.ready.push(task);
    this.pump();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.pump();
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Tasks running now. */
  get running(): number {
    return this.active;
  }

  /** Tasks waiting (ready or delayed) plus running. */
  get pending(): number {
    return this.ready.length + this.timers.size + this.active;
  }

  /** Resolves when nothing is queued, delayed or running. */
  onIdle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Drops what is queued and delayed; running tasks finish (or are aborted by runner.close). */
  drain(): TaskSpec[] {
    const left = this.ready.splice(0);
    for (const [t, task] of this.timers) {
      clearTimeout(t);
      left.push(task);
    }
    this.timers.clear();
    this.checkIdle();
    return left;
  }

  async close(opts: { abort?: boolean } = {}): Promise<void> {
    this.closed = true;
    this.drain();
    await this.runner.close(opts);
    await this.onIdle();
  }

  private pump(): void {
    while (!this.paused && !this.closed && this.active < this.concurrency && this.ready.length > 0) {
      const task = this.ready.shift()!;
      this.active++;
      void this.runOne(task);
    }
    this.checkIdle();
  }

  private async runOne(task: TaskSpec): Promise<void> {
    let r: HandleResult;
    try {
      r = await this.runner.handle(task);
    } catch (e) {
      // handle() reports its own failures; this is a bug guard so the queue never stalls.
      r = { kind: 'postpone', postponed: { taskId: task.taskId, tenantId: task.tenantId, runId: task.runId, cause: 'admission_unavailable', reason: String(e), retryAfterMs: 1000 } };
    }
    this.active--;
    this.o.onResult?.(task, r);
    if (r.kind !== 'done' && !this.closed) {
      const retry = this.o.onPostpone ? this.o.onPostpone(task, r) : r.kind === 'postpone';
      if (retry) {
        const t = setTimeout(() => {
          this.timers.delete(t);
          this.add(task);
        }, r.postponed.retryAfterMs);
        this.timers.set(t, task);
      }
    }
    this.pump();
  }

  private checkIdle(): void {
    if (this.pending !== 0) return;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const r of w) r();
  }
}

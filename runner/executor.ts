import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { TaskSpec } from './types.ts';

/** What a task reports of its actual usage (the child-process protocol: a `FORGE_REPORT {json}` line). */
export interface TaskReport {
  /** Compute time the task itself measured, ms (else the runner's wall clock from spawn to exit). */
  runtimeMs?: number;
  gasUsed?: number;
  llm?: Array<{ model: string; inputTokens: number; outputTokens: number }>;
}

export interface ExecContext {
  /** Fired on EMERGENCY_STOP, on a heartbeat timeout, or on shutdown; the executor must stop the task. */
  signal: AbortSignal;
  /** Call whenever the task shows life. A task silent past its timeout is flagged and killed. */
  heartbeat(): void;
  /** Usage so far (cumulative, as a final report would say it): the runner prices it against the task's ceiling. */
  progress?(usage: TaskReport): void;
}

export interface ExecResult {
  ok: boolean;
  exitCode?: number | null;
  killedBy?: string | null;
  detail?: string;
  report?: TaskReport;
}

/**
 * Runs one task. The default runs a local child process; the interface leaves room for others (a
 * Kubernetes Job executor would create the Job, watch its pod for heartbeats, and delete it on abort).
 */
export interface Executor {
  run(task: TaskSpec, ctx: ExecContext): Promise<ExecResult>;
}

export interface ChildProcessExecutorOptions {
  /** After SIGTERM on abort, SIGKILL after this many ms. Default 2000. */
  killGraceMs?: number;
  /** Lines of stderr kept for the failure detail. Default 20. */
  stderrLines?: number;
}

/**
 * Runs `task.command` as a child process. Every stdout line is a heartbeat; a line
 * `FORGE_REPORT {"runtimeMs":..,"gasUsed":..,"llm":[..]}` reports actual usage, and `FORGE_PROGRESS {..}` (same
 * shape, cumulative) the usage so far of a task still running. The AbortSignal kills the process
 * (SIGTERM, then SIGKILL after a grace period). Exit code 0 = success.
 */
export class ChildProcessExecutor implements Executor {
  constructor(private readonly o: ChildProcessExecutorOptions = {}) {}

  run(task: TaskSpec, ctx: ExecContext): Promise<ExecResult> {
    const c = task.command;
    if (!c) return Promise.resolve({ ok: false, detail: 'task has no command' });
    if (ctx.signal.aborted) return Promise.resolve({ ok: false, detail: 'aborted before start' });
    return new Promise((resolve) => {
      const child = spawn(c.cmd === 'node' ? process.execPath : c.cmd, c.args, {
        cwd: c.cwd,
        env: { ...process.env, ...c.env, FORGE_TASK_ID: task.taskId, FORGE_TENANT_ID: task.tenantId, FORGE_RUN_ID: task.runId },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let report: TaskReport | undefined;
      const errTail: string[] = [];
      let killTimer: NodeJS.Timeout | undefined;
      const onAbort = (): void => {
        child.kill('SIGTERM');
        killTimer = setTimeout(() => child.kill('SIGKILL'), this.o.killGraceMs ?? 2000);
      };
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      createInterface({ input: child.stdout }).on('line', (line) => {
        ctx.heartbeat();
        if (line.startsWith('FORGE_PROGRESS ')) {
          try {
            ctx.progress?.(JSON.parse(line.slice('FORGE_PROGRESS '.length)) as TaskReport);
          } catch {
            errTail.push(`unparseable progress: ${line.slice(0, 200)}`);
          }
        } else if (line.startsWith('FORGE_REPORT ')) {
          try {
            report = JSON.parse(line.slice('FORGE_REPORT '.length)) as TaskReport;
          } catch {
            errTail.push(`unparseable report: ${line.slice(0, 200)}`);
          }
        }
      });
      createInterface({ input: child.stderr }).on('line', (line) => {
        errTail.push(line);
        if (errTail.length > (this.o.stderrLines ?? 20)) errTail.shift();
      });
      const finish = (r: ExecResult): void => {
        ctx.signal.removeEventListener('abort', onAbort);
        if (killTimer) clearTimeout(killTimer);
        resolve(r);
      };
      child.on('error', (e) => finish({ ok: false, detail: `spawn failed: ${e.message}` }));
      child.on('close', (code, sig) => {
        const ok = code === 0 && !ctx.signal.aborted;
        finish({
          ok,
          exitCode: code,
          killedBy: sig,
          ...(report ? { report } : {}),
          ...(ok ? {} : { detail: sig ? `killed by ${sig}` : `exit code ${code}${errTail.length ? `: ${errTail.join(' | ').slice(0, 500)}` : ''}` }),
        });
      });
    });
  }
}

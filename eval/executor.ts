import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { AGENT_PROGRAMS, type AgentDetail } from './agents.ts';
import type { ZipFile } from './zip.ts';

/** One agent run on one task. */
export interface AgentJob {
  agent: AgentDetail;
  /** ZIP agents: the archive's files (already checked by the agent store). */
  files: ZipFile[];
  /** What the agent receives (stdin, and the file FORGE_TASK_FILE names). */
  task: { task_id: string } & Record<string, unknown>;
  timeoutMs: number;
  memoryMb: number;
}

export type AgentOutcome = 'ok' | 'crash' | 'timeout' | 'aborted' | 'no_answer' | 'bad_answer' | 'unsupported';

export interface AgentRunResult {
  outcome: AgentOutcome;
  /** The parsed `FORGE_ANSWER {json}` line (the last one), when outcome is 'ok'. */
  answer?: unknown;
  exitCode: number | null;
  signal: string | null;
  /** The tail of stdout and stderr (stderr lines prefixed `! `), at most LOG_TAIL_BYTES. */
  logs: string;
  /** Why the run is not 'ok', in one line. */
  error?: string;
  durationMs: number;
  /** What isolation was in force: network namespace or none. */
  isolation: { network: 'off' | 'open'; memory: 'rlimit' | 'none' };
}

/** Runs an agent on a task. The local child process is the default; Kubernetes Jobs are the other. */
export interface AgentExecutor {
  readonly name: string;
  run(job: AgentJob, signal: AbortSignal): Promise<AgentRunResult>;
}

export const ANSWER_PREFIX = 'FORGE_ANSWER ';
export const LOG_TAIL_BYTES = 16 * 1024;

/** Keeps the last `max` bytes of what is appended (whole lines where possible). */
export class Tail {
  #s = '';
  constructor(private readonly max = LOG_TAIL_BYTES) {}
  push(line: string): void {
    this.#s += `${line}\n`;
    if (this.#s.length > this.max * 2) this.#s = this.#s.slice(-this.max);
  }
  toString(): string {
    return this.#s.length > this.max ? `…${this.#s.slice(-this.max)}` : this.#s;
  }
}

/** Parses an agent's answer line; undefined when there is none, Error when it is not JSON. */
export function answerOf(line: string | undefined): unknown {
  if (line === undefined) return undefined;
  try {
    return JSON.parse(line) as unknown;
  } catch (e) {
    return new Error(`the answer is not JSON: ${(e as Error).message}`);
  }
}

let netnsProbe: boolean | undefined;
/** Whether an unprivileged user + network namespace can be made here (`unshare -rn`): then agents get no network. */
export function networkIsolationAvailable(): boolean {
  netnsProbe ??= spawnSync('unshare', ['-rn', 'true'], { stdio: 'ignore', timeout: 5000 }).status === 0;
  return netnsProbe;
}

export interface LocalExecutorOptions {
  /** Refuse to run when the network cannot be turned off (default false: run, and report `network: 'open'`). */
  requireNetworkIsolation?: boolean;
  /** Where per-task work directories are made (default the OS temp dir). */
  workDir?: string;
}

/**
 * Runs a ZIP agent as a local child process, one process per task, in a fresh directory holding the agent's
 * files and task.json. What is enforced, without root:
 * - time: the whole process group is SIGKILLed at `timeoutMs` (and on abort: a halt, a stop);
 * - memory: RLIMIT_DATA = memoryMb (prlimit), so heap growth past it fails (Node aborts, Python MemoryError);
 *   Node agents also get --max-old-space-size; RLIMIT_CORE 0, RLIMIT_FSIZE 64 MiB, RLIMIT_NOFILE 256;
 * - network: a new user + network namespace (`unshare -rn`: only a downed loopback) when the kernel allows
 *   unprivileged user namespaces; otherwise the network stays open and the result says so;
 * - environment: only PATH, HOME/TMPDIR (the work dir), LANG and FORGE_TASK_* reach the agent, no secrets.
 * Not enforced: CPU share, filesystem reads outside the work dir, process count (no cgroups without root).
 */
export class LocalProcessExecutor implements AgentExecutor {
  readonly name = 'local';
  constructor(private readonly o: LocalExecutorOptions = {}) {}

  async run(job: AgentJob, signal: AbortSignal): Promise<AgentRunResult> {
    const started = Date.now();
    const net = networkIsolationAvailable();
    const isolation = { network: net ? ('off' as const) : ('open' as const), memory: 'rlimit' as const };
    const fail = (outcome: AgentOutcome, error: string): AgentRunResult => ({ outcome, exitCode: null, signal: null, logs: '', error, durationMs: Date.now() - started, isolation });
    if (job.agent.kind !== 'zip') return fail('unsupported', 'the local executor runs ZIP agents; image agents need the Kubernetes executor');
    if (!net && this.o.requireNetworkIsolation) return fail('unsupported', 'network isolation (unshare -rn) is not available on this host');
    if (signal.aborted) return fail('aborted', 'aborted before start');
    const dir = mkdtempSync(join(this.o.workDir ?? tmpdir(), 'forge-agent-'));
    try {
      for (const f of job.files) {
        const p = join(dir, f.name);
        mkdirSync(dirname(p), { recursive: true });
        writeFileSync(p, f.data);
      }
      const taskJson = JSON.stringify(job.task);
      writeFileSync(join(dir, 'task.json'), taskJson);
      const [program, ...args] = job.agent.command as [string, ...string[]];
      const isNode = program === 'node';
      let exe: string;
      if (isNode) exe = process.execPath;
      else if ((AGENT_PROGRAMS as readonly string[]).includes(program)) exe = program;
      else {
        exe = join(dir, program.replace(/^\.\//, ''));
        chmodSync(exe, 0o755);
      }
      const argv = [...(isNode ? [`--max-old-space-size=${job.memoryMb}`] : []), ...args];
      const limits = [`--data=${job.memoryMb * 1024 * 1024}`, '--core=0', `--fsize=${64 * 1024 * 1024}`, '--nofile=256'];
      const cmd = ['prlimit', ...limits, '--', ...(net ? ['unshare', '-rn', '--'] : []), exe, ...argv];
      return await new Promise<AgentRunResult>((resolve) => {
        const child = spawn(cmd[0]!, cmd.slice(1), {
          cwd: dir,
          detached: true,
          env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, TMPDIR: dir, LANG: 'C.UTF-8', FORGE_TASK_FILE: join(dir, 'task.json'), FORGE_TASK_ID: job.task.task_id },
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        const logs = new Tail();
        let answerLine: string | undefined;
        let why: 'timeout' | 'aborted' | undefined;
        const killGroup = (): void => {
          try {
            if (child.pid) process.kill(-child.pid, 'SIGKILL');
          } catch {
            // Already gone.
          }
        };
        const timer = setTimeout(() => {
          why ??= 'timeout';
          killGroup();
        }, job.timeoutMs);
        const onAbort = (): void => {
          why ??= 'aborted';
          killGroup();
        };
        signal.addEventListener('abort', onAbort, { once: true });
        child.stdin.on('error', () => undefined);
        child.stdin.end(taskJson);
        createInterface({ input: child.stdout }).on('line', (line) => {
          if (line.startsWith(ANSWER_PREFIX)) answerLine = line.slice(ANSWER_PREFIX.length);
          else logs.push(line.slice(0, 2000));
        });
        createInterface({ input: child.stderr }).on('line', (line) => logs.push(`! ${line.slice(0, 2000)}`));
        const done = (r: Omit<AgentRunResult, 'durationMs' | 'isolation' | 'logs'>): void => {
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
          resolve({ ...r, logs: logs.toString(), durationMs: Date.now() - started, isolation });
        };
        child.on('error', (e) => done({ outcome: 'crash', exitCode: null, signal: null, error: `could not start: ${e.message}` }));
        child.on('close', (code, sig) => {
          const base = { exitCode: code, signal: sig };
          if (why === 'timeout') return done({ ...base, outcome: 'timeout', error: `timed out after ${job.timeoutMs} ms` });
          if (why === 'aborted') return done({ ...base, outcome: 'aborted', error: 'stopped by a halt or by the caller' });
          if (code !== 0) return done({ ...base, outcome: 'crash', error: sig ? `killed by ${sig}` : `exit code ${code}` });
          const answer = answerOf(answerLine);
          if (answer === undefined) return done({ ...base, outcome: 'no_answer', error: `exited 0 without a ${ANSWER_PREFIX.trim()} line` });
          if (answer instanceof Error) return done({ ...base, outcome: 'bad_answer', error: answer.message });
          done({ ...base, outcome: 'ok', answer });
        });
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

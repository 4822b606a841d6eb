import { readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AgentStore } from './agents.ts';
import { EvalError } from './errors.ts';
import type { EvalResults } from './results.ts';
import { loadEvalSuite, type EvalSuite } from './suite.ts';

/** The suites Forge ships (config/eval). */
export const SHIPPED_SUITES_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'config', 'eval');

/** Suites by name: every *.yaml / *.yml of the given directories (the shipped config/eval first; a later name wins). */
export class EvalSuiteRegistry {
  readonly #byName = new Map<string, EvalSuite>();

  constructor(dirs: string[]) {
    for (const dir of dirs) {
      for (const f of readdirSync(dir).filter((n) => /\.ya?ml$/.test(n)).sort()) {
        const s = loadEvalSuite(join(dir, f)); // FORGE_ERR_SUITE_CONFIG names the file: fails the start
        this.#byName.set(s.suite, s);
      }
    }
  }

  get(name: string): EvalSuite | undefined {
    return this.#byName.get(name);
  }

  names(): string[] {
    return [...this.#byName.keys()].sort();
  }
}

/** A run to start in the background. */
export interface EvalRunRequest {
  tenantId: string;
  suite: string;
  agentId: string;
  runId: string;
  /** Tasks at once, 1-8. */
  concurrency: number;
}

export interface EvalRunLauncherOptions {
  /** The suites a run may name. */
  suites: EvalSuiteRegistry;
  /** The tenant's agents and runs: an unknown agent, or a run id of another agent or suite, is refused. */
  agents: Pick<AgentStore, 'get'>;
  results: Pick<EvalResults, 'run'>;
  /** Runs at once in this process; one more is refused with FORGE_ERR_RATE_LIMITED. */
  maxRuns: number;
  /** The run itself; it ends early when the signal aborts. */
  run: (r: EvalRunRequest, suite: EvalSuite, signal: AbortSignal) => Promise<void>;
  onError: (e: unknown, where: string) => void;
}

/**
 * Eval runs started over the API, run in the background of the server process: a bounded number at once,
 * one per (tenant, run id), aborted and awaited on close. A run's failure goes to onError (the engine has
 * already recorded it on the run).
 */
export class EvalRunLauncher {
  readonly #running = new Map<string, { abort: AbortController; done: Promise<void> }>();
  #closed = false;

  constructor(private readonly o: EvalRunLauncherOptions) {}

  /** Resolves once the run is accepted and started (not when it ends). */
  async start(r: EvalRunRequest): Promise<void> {
    const key = `${r.tenantId}/${r.runId}`;
    if (this.#closed) throw new EvalError('FORGE_ERR_CONFLICT', 'the server is shutting down', { field: 'run_id' });
    // What to fix in the request first; then whether there is room (after the await: no race between them).
    const suite = this.o.suites.get(r.suite);
    if (!suite) throw new EvalError('FORGE_ERR_NOT_FOUND', `no suite ${r.suite} (known: ${this.o.suites.names().join(', ')})`, { field: 'suite' });
    if (!(await this.o.agents.get(r.tenantId, r.agentId))) throw new EvalError('FORGE_ERR_NOT_FOUND', `agent ${r.agentId} not found`, { field: 'agent_id' });
    const existing = await this.o.results.run(r.tenantId, r.runId);
    if (existing && (existing.agentId !== r.agentId || existing.suite !== r.suite)) {
      throw new EvalError('FORGE_ERR_CONFLICT', `run ${r.runId} is of agent ${existing.agentId.slice(0, 12)} on ${existing.suite}: use a new run id`, { field: 'run_id' });
    }
    if (this.#running.has(key)) throw new EvalError('FORGE_ERR_CONFLICT', `run ${r.runId} is running`, { field: 'run_id' });
    if (this.#running.size >= this.o.maxRuns) throw new EvalError('FORGE_ERR_RATE_LIMITED', `${this.o.maxRuns} eval runs are running in this process: try again when one ends`, { field: 'run_id' });
    const abort = new AbortController();
    const done = this.o
      .run(r, suite, abort.signal)
      .catch((e: unknown) => this.o.onError(e, `eval run ${key}`))
      .finally(() => this.#running.delete(key));
    this.#running.set(key, { abort, done });
  }

  /** Runs in flight, as tenant/run. */
  running(): string[] {
    return [...this.#running.keys()];
  }

  /** Aborts every run in flight and waits for them to end. */
  async close(): Promise<void> {
    this.#closed = true;
    const all = [...this.#running.values()];
    for (const r of all) r.abort.abort();
    await Promise.all(all.map((r) => r.done));
  }
}

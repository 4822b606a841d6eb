import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisHaltBus, RedisLedger, type HaltBus, type ScopeCaps } from '../guard/index.ts';
import { parseTaskEvent } from '../collector/index.ts';
import type { StateChange } from '../rules/index.ts';
import {
  BullTaskWorker,
  SIM_TASK_SCRIPT,
  TaskQueue,
  TaskRunner,
  type EventEmitterClient,
  type HungTask,
  type Postponed,
  type Pricing,
  type TaskFinalizedEvent,
  type TaskOutcome,
  type TaskSpec,
} from '../runner/index.ts';
import { guardrailOn } from './helpers/guardrail.ts';
import { freshPrefix, startProxy, startRedis, waitFor, type RedisServer } from './helpers/redis.ts';

const BIG = Number.MAX_SAFE_INTEGER;
const OPEN: ScopeCaps = { dayHard: BIG, weekHard: BIG, runCap: BIG };
const PRICING: Pricing = { computeHourUsd: '3.20', gasPriceGwei: '2', nativeUsd: '3000', chainId: 31337, llm: { 'gpt-4o': { inputPerMTokUsd: '2.50', outputPerMTokUsd: '10.00' } } };

class CheckedEvents implements EventEmitterClient {
  readonly events: TaskFinalizedEvent[] = [];
  readonly rejected: string[] = [];
  async emit(e: TaskFinalizedEvent): Promise<void> {
    const r = parseTaskEvent(JSON.parse(JSON.stringify(e)), { now: Date.now() });
    if (!r.ok) this.rejected.push(`${e.task_id}: ${r.field} ${r.reason}`);
    this.events.push(e);
  }
}

/** A bus that never hears pushes (a runner that missed every message); durable reads still work. */
function deaf(bus: HaltBus): HaltBus {
  return { publish: (c) => bus.publish(c), subscribe: () => () => {}, ready: () => bus.ready(), current: (s) => bus.current(s), scopes: () => bus.scopes(), close: () => bus.close() };
}

let seq = 0;
function uid(tag: string): string {
  return `${tag}${process.pid}x${++seq}x${Math.random().toString(36).slice(2, 6)}`;
}

function simTask(tenantId: string, runId: string, taskId: string, o: { durationMs?: number; hangAfterMs?: number; heartbeatTimeoutMs?: number } = {}): TaskSpec {
  return {
    taskId,
    tenantId,
    runId,
    taskType: 'eval.test',
    model: 'gpt-4o',
    environment: 'test',
    profile: { rliEvalUsd: '0.50', gasUsed: 100_000, runtimeHours: '0.10', llm: [{ model: 'gpt-4o', inputTokens: 10_000, outputTokens: 1_000 }] },
    secondsPerHour: 1,
    ...(o.heartbeatTimeoutMs ? { heartbeatTimeoutMs: o.heartbeatTimeoutMs } : {}),
    command: {
      cmd: 'node',
      args: [SIM_TASK_SCRIPT],
      env: {
        FORGE_SIM_DURATION_MS: String(o.durationMs ?? 100),
        FORGE_SIM_HEARTBEAT_MS: '50',
        FORGE_SIM_REPORT: JSON.stringify({ gasUsed: 100_000, llm: [{ model: 'gpt-4o', inputTokens: 10_000, outputTokens: 1_000 }] }),
        ...(o.hangAfterMs !== undefined ? { FORGE_SIM_HANG_AFTER_MS: String(o.hangAfterMs) } : {}),
      },
    },
  };
}

function change(scope: string, seq: number, state: StateChange['state'], previous: StateChange['state'] = 'NORMAL'): StateChange {
  return { scope, state, previous, seq, at: Date.now(), reason: `test ${state}`, holds: [], weekMicros: 0 };
}

interface Harness {
  runner: TaskRunner;
  worker: BullTaskWorker;
  bus: HaltBus;
  ledger: RedisLedger;
  events: CheckedEvents;
  starts: TaskSpec[];
  ends: TaskOutcome[];
  postponed: Postponed[];
  hung: HungTask[];
  terminated: string[];
  close(): Promise<void>;
}

describe('runner on Redis (BullMQ worker, Redis halt bus, Redis ledger)', () => {
  let redis: RedisServer;
  const toClose: Array<() => Promise<void>> = [];
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    for (const c of toClose.reverse()) await c().catch(() => {});
    await redis.stop();
  });

  async function runnerOn(o: {
    queueName: string;
    keyPrefix: string;
    busUrl?: string;
    ledgerUrl?: string;
    wrapBus?: (b: HaltBus) => HaltBus;
    intakeScopes?: string[];
    concurrency?: number;
  }): Promise<Harness> {
    const rawBus = new RedisHaltBus({ url: o.busUrl ?? redis.url, keyPrefix: o.keyPrefix, onError: () => {}, commandTimeoutMs: 300, backoff: { initialMs: 20, maxMs: 200 } });
    const bus = o.wrapBus ? o.wrapBus(rawBus) : rawBus;
    const ledger = new RedisLedger({ url: o.ledgerUrl ?? redis.url, keyPrefix: o.keyPrefix, onError: () => {}, commandTimeoutMs: 300, backoff: { initialMs: 20, maxMs: 200 } });
    const guarded = guardrailOn({ ledger, bus: rawBus });
    const events = new CheckedEvents();
    const h = { starts: [] as TaskSpec[], ends: [] as TaskOutcome[], postponed: [] as Postponed[], hung: [] as HungTask[], terminated: [] as string[] };
    const runner = new TaskRunner({
      bus,
      admission: guarded.admission,
      events,
      pricing: PRICING,
      intakeScopes: o.intakeScopes ?? [],
      retryDelayMs: 150,
      heartbeatTimeoutMs: 10_000,
      onError: () => {},
      onTaskStart: (t) => h.starts.push(t),
      onTaskEnd: (x) => h.ends.push(x),
      onPostponed: (p) => h.postponed.push(p),
      onHung: (x) => h.hung.push(x),
      onRunTerminated: (r) => h.terminated.push(r),
    });
    const worker = new BullTaskWorker(runner, { redisUrl: redis.url, queueName: o.queueName, prefix: 'forge-test', concurrency: o.concurrency ?? 2, onError: () => {} });
    await worker.start();
    const close = async (): Promise<void> => {
      await worker.close({ abort: true });
      guarded.guardrail.close();
      await bus.close();
      await ledger.close();
    };
    toClose.push(close);
    return { runner, worker, bus, ledger, events, ...h, close };
  }

  function world(): { queueName: string; keyPrefix: string; queue: TaskQueue; pub: RedisHaltBus } {
    const queueName = uid('q');
    const keyPrefix = freshPrefix('runner');
    const queue = new TaskQueue({ redisUrl: redis.url, queueName, prefix: 'forge-test' });
    const pub = new RedisHaltBus({ url: redis.url, keyPrefix, onError: () => {} });
    toClose.push(() => queue.close(), () => pub.close());
    return { queueName, keyPrefix, queue, pub };
  }

  it('a HARD_STOP reaches every worker: intake pauses, queued jobs wait; the lift resumes them', async () => {
    const w = world();
    const workers = await Promise.all([1, 2, 3].map(() => runnerOn(w)));
    await w.pub.publish(change('global', 1, 'HARD_STOP'));
    await waitFor('all three paused', () => workers.every((x) => !x.runner.intakeOpen && x.worker.worker.isPaused()));
    const tenant = uid('t');
    for (let i = 0; i < 6; i++) await w.queue.add(simTask(tenant, 'r1', `task-${i}`));
    await new Promise((r) => setTimeout(r, 400));
    expect(workers.flatMap((x) => x.starts)).toEqual([]);

    await w.pub.publish(change('global', 2, 'NORMAL', 'HARD_STOP'));
    await waitFor('all six done', () => workers.flatMap((x) => x.ends).length === 6, 30_000);
    expect(workers.every((x) => x.runner.intakeOpen)).toBe(true);
    const ends = workers.flatMap((x) => x.ends);
    expect(ends.every((e) => e.status === 'success' && e.emitted && e.settled)).toBe(true);
    expect(workers.flatMap((x) => x.events.rejected)).toEqual([]);
    const snap = await workers[0]!.ledger.snapshot(`run:${tenant}/r1`, Date.now());
    expect(snap).toMatchObject({ reservedMicros: 0, openReservations: 0, runMicros: ends.reduce((s, e) => s + e.costMicros, 0) });
  });

  it('a worker that missed the push reads the durable state and does not start the task', async () => {
    const w = world();
    const x = await runnerOn({ ...w, wrapBus: deaf });
    const tenant = uid('t');
    await w.pub.publish(change(`tenant:${tenant}`, 1, 'HARD_STOP'));
    await w.queue.add(simTask(tenant, 'r1', 'after-halt'));
    await waitFor('postponed as halted', () => x.postponed.some((p) => p.cause === 'halted' && p.scope === `tenant:${tenant}`));
    expect(x.starts).toEqual([]);
    await w.pub.publish(change(`tenant:${tenant}`, 2, 'NORMAL', 'HARD_STOP'));
    await waitFor('runs after the lift', () => x.ends.length === 1, 20_000);
    expect(x.ends[0]).toMatchObject({ taskId: 'after-halt', status: 'success' });
  });

  it('a worker cut off during the halt learns it on reconnect and stops before its next task', async () => {
    const w = world();
    const proxy = await startProxy(redis.port);
    toClose.push(() => proxy.close());
    const tenant = uid('t');
    const x = await runnerOn({ ...w, busUrl: proxy.url, intakeScopes: [`tenant:${tenant}`] });
    expect(x.runner.intakeOpen).toBe(true);
    proxy.cut();
    await w.pub.publish(change(`tenant:${tenant}`, 1, 'HARD_STOP'));
    await w.queue.add(simTask(tenant, 'r1', 'during-cut'));
    await new Promise((r) => setTimeout(r, 300));
    proxy.restore();
    await waitFor('learned the halt after reconnect', () => !x.runner.intakeOpen, 15_000);
    expect(x.runner.stateOf(`tenant:${tenant}`)).toBe('HARD_STOP');
    await new Promise((r) => setTimeout(r, 300));
    expect(x.starts).toEqual([]);
    await w.pub.publish(change(`tenant:${tenant}`, 2, 'NORMAL', 'HARD_STOP'));
    await waitFor('resumed', () => x.ends.length === 1, 20_000);
  });

  it('Redis behind the ledger killed mid-run: admissions fail closed, no task starts, work resumes when it returns', async () => {
    const state = await startRedis();
    toClose.push(() => state.stop());
    const w = world();
    const x = await runnerOn({ ...w, ledgerUrl: state.url });
    const tenant = uid('t');
    await w.queue.add(simTask(tenant, 'r1', 'before'));
    await waitFor('first task done', () => x.ends.length === 1, 20_000);

    await state.kill();
    await expect(x.ledger.reserve({ reservationId: 'probe', scopes: [{ scope: 'global', caps: OPEN }], amountMicros: 1, now: Date.now(), ttlMs: 1000 })).rejects.toMatchObject({
      code: 'FORGE_ERR_LEDGER_UNAVAILABLE',
    });
    await w.queue.add(simTask(tenant, 'r1', 'during-1'));
    await w.queue.add(simTask(tenant, 'r1', 'during-2'));
    await waitFor('both refused at admission', () => new Set(x.postponed.filter((p) => p.cause === 'admission_unavailable').map((p) => p.taskId)).size === 2, 20_000);
    expect(x.starts.map((t) => t.taskId)).toEqual(['before']);

    await state.restart();
    await waitFor('work resumes', () => x.ends.length === 3, 30_000);
    expect(x.ends.map((e) => e.taskId).sort()).toEqual(['before', 'during-1', 'during-2']);
  });

  it('EMERGENCY_STOP aborts tasks in flight (recorded failed/aborted), terminates their run; the lift resumes intake', async () => {
    const w = world();
    const tenant = uid('t');
    const x = await runnerOn({ ...w, intakeScopes: [`tenant:${tenant}`], concurrency: 2 });
    await w.queue.add(simTask(tenant, 'r1', 'long-1', { durationMs: 60_000 }));
    await w.queue.add(simTask(tenant, 'r1', 'long-2', { durationMs: 60_000 }));
    await waitFor('both started', () => x.starts.length === 2, 20_000);
    await w.queue.add(simTask(tenant, 'r1', 'queued-same-run'));

    await w.pub.publish(change(`tenant:${tenant}`, 1, 'EMERGENCY_STOP', 'HARD_STOP'));
    await waitFor('both aborted', () => x.ends.length === 2, 20_000);
    for (const e of x.ends) expect(e).toMatchObject({ status: 'failed', reason: 'aborted', emitted: true, settled: true });
    expect(x.events.events.map((e) => [e.status, e.reported_end_reason])).toEqual([
      ['failed', 'aborted'],
      ['failed', 'aborted'],
    ]);
    expect(x.events.rejected).toEqual([]);
    expect(x.terminated).toEqual([`run:${tenant}/r1`]);
    expect(x.runner.intakeOpen).toBe(false);
    const job = await w.queue.queue.getJob(`${tenant}.r1.long-1`);
    await waitFor('job failed', async () => (await job!.getState()) === 'failed');
    expect((await w.queue.queue.getJob(`${tenant}.r1.long-1`))!.failedReason).toMatch(/^aborted/);
    expect((await x.ledger.snapshot(`tenant:${tenant}`, Date.now())).reservedMicros).toBe(0);

    await w.pub.publish(change(`tenant:${tenant}`, 2, 'NORMAL', 'EMERGENCY_STOP'));
    await waitFor('intake open', () => x.runner.intakeOpen);
    await w.queue.add(simTask(tenant, 'r2', 'new-run'));
    await waitFor('new run runs', () => x.ends.some((e) => e.taskId === 'new-run'), 20_000);
    // The terminated run's queued task never started.
    await waitFor('queued task dropped', () => x.postponed.some((p) => p.taskId === 'queued-same-run' && p.cause === 'run_terminated'), 20_000);
    expect(x.starts.map((t) => t.taskId)).not.toContain('queued-same-run');
  });

  it('a hung task (no heartbeat past its timeout) is flagged and killed', async () => {
    const w = world();
    const x = await runnerOn(w);
    const tenant = uid('t');
    await w.queue.add(simTask(tenant, 'r1', 'hangs', { hangAfterMs: 100, heartbeatTimeoutMs: 400 }));
    await waitFor('ended', () => x.ends.length === 1, 20_000);
    expect(x.hung).toHaveLength(1);
    expect(x.hung[0]!.silentMs).toBeGreaterThan(400);
    expect(x.ends[0]).toMatchObject({ taskId: 'hangs', status: 'failed', reason: 'hung' });
    expect(x.events.events[0]).toMatchObject({ status: 'failed', reported_end_reason: 'hung' });
  });
});

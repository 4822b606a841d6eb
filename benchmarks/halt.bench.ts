import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { StateChange } from '../rules/index.ts';
import { RedisHaltBus } from '../guard/index.ts';
import { TaskRunner, type AdmissionClient, type EventEmitterClient } from '../runner/index.ts';
import { startAlertmanager, startPrometheusWithRules } from '../test/helpers/alertmanager.ts';
import { bandsYaml, startForgeProcess, type ForgeProcess } from '../test/helpers/forge-process.ts';
import { freshPrefix, startRedis, type RedisServer } from '../test/helpers/redis.ts';
import { percentile, ratio, type Benchmark, type BenchRow, type BenchSize } from './harness.ts';

/*
 * Publish-to-stopped-intake over the Redis halt bus: N TaskRunners, each with its own RedisHaltBus (own
 * subscriber and command connections), all in this process. One trial = publish a global HARD_STOP and
 * time until every runner has closed its intake (the worst of N), then lift and wait for all to reopen.
 * Baseline, same run: runners that poll the durable state once a second instead of subscribing.
 * Full size also measures, once, a Prometheus + Alertmanager path with default intervals (scrape and
 * evaluation 1 m, group_wait 30 s) from the metric flipping on /metrics to the webhook.
 */

const never: AdmissionClient & EventEmitterClient = {
  admit: () => Promise.reject(new Error('not used')),
  settle: () => Promise.reject(new Error('not used')),
  emit: () => Promise.reject(new Error('not used')),
};

function change(seq: number, state: StateChange['state']): StateChange {
  return { scope: 'global', state, previous: state === 'NORMAL' ? 'HARD_STOP' : 'NORMAL', seq, at: Date.now(), reason: 'bench', holds: [], weekMicros: 0 };
}

interface Fleet {
  buses: RedisHaltBus[];
  runners: TaskRunner[];
  /** Resolves when all runners' intake is in the wanted state; gives each runner's time of change. */
  when(open: boolean): Promise<number[]>;
  close(): Promise<void>;
}

async function fleet(redis: RedisServer, keyPrefix: string, n: number, intakeScopes: string[] = []): Promise<Fleet> {
  const buses: RedisHaltBus[] = [];
  const runners: TaskRunner[] = [];
  let waiting: { open: boolean; times: Array<number | undefined>; left: number; resolve: (t: number[]) => void } | undefined;
  for (let i = 0; i < n; i++) {
    const bus = new RedisHaltBus({ url: redis.url, keyPrefix, onError: () => {} });
    const runner = new TaskRunner({
      bus,
      admission: never,
      events: never,
      pricing: { computeHourUsd: '0', gasPriceGwei: '0', nativeUsd: '0', chainId: 1, llm: {} },
      intakeScopes,
      onError: () => {},
      onIntake: (open) => {
        const t = performance.now();
        const w = waiting;
        if (!w || w.open !== open || w.times[i] !== undefined) return;
        w.times[i] = t;
        if (--w.left === 0) {
          waiting = undefined;
          w.resolve(w.times as number[]);
        }
      },
    });
    buses.push(bus);
    runners.push(runner);
  }
  await Promise.all(runners.map((r) => r.start()));
  return {
    buses,
    runners,
    when(open) {
      return new Promise((resolve) => {
        waiting = { open, times: new Array<number | undefined>(n).fill(undefined), left: n, resolve };
      });
    },
    async close() {
      await Promise.all(runners.map((r) => r.close()));
      await Promise.all(buses.map((b) => b.close()));
    },
  };
}

/** Worst-of-N latency per trial, ms, for the pushed bus. */
async function measurePush(redis: RedisServer, n: number, trials: number): Promise<number[]> {
  const keyPrefix = freshPrefix('bench-halt');
  const f = await fleet(redis, keyPrefix, n);
  const pub = new RedisHaltBus({ url: redis.url, keyPrefix, onError: () => {} });
  const out: number[] = [];
  try {
    let seq = 0;
    for (let t = 0; t < trials + 3; t++) {
      const stopped = f.when(false);
      const t0 = performance.now();
      await pub.publish(change(++seq, 'HARD_STOP'));
      const times = await stopped;
      if (t >= 3) out.push(Math.max(...times) - t0); // 3 warm-up trials
      const reopened = f.when(true);
      await pub.publish(change(++seq, 'NORMAL'));
      await reopened;
    }
  } finally {
    await pub.close();
    await f.close();
  }
  return out;
}

const HTTP_BANDS = bandsYaml({ hb: { B_day_soft: 0.5, B_day_hard: 1 } });

async function call(p: ForgeProcess, method: 'POST' | 'PUT', path: string, body: unknown): Promise<void> {
  const r = await fetch(`${p.url}${path}`, { method, headers: { authorization: `Bearer ${p.key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`${method} ${path}: ${r.status} ${text}`);
}

/**
 * The whole path: a Forge API process (Redis halt bus) accepts a task's cost event over HTTP that takes
 * tenant hb past its day hard band; time from the HTTP response to every one of N runners (intake scope
 * tenant:hb, own Redis connections) having closed intake. Between trials an operator lifts the stop and
 * finance raises the band by 1 USD past the spend, so the next 1.05 USD event breaches it again.
 */
async function measureFromHttp(redis: RedisServer, n: number, trials: number): Promise<{ ms: number[]; fromRequest: number[]; beforeResponse: number }> {
  const keyPrefix = freshPrefix('bench-http');
  const forge = await startForgeProcess({ FORGE_REDIS_URL: redis.url, FORGE_REDIS_PREFIX: keyPrefix, FORGE_ROLLUP_INTERVAL_MS: '3600000', FORGE_FLUSH_INTERVAL_MS: '10' }, HTTP_BANDS);
  const f = await fleet(redis, keyPrefix, n, ['tenant:hb']);
  const out: number[] = [];
  const fromRequest: number[] = [];
  let beforeResponse = 0;
  let spentMicros = 0;
  try {
    for (let t = 0; t < trials + 3; t++) {
      const stopped = f.when(false);
      const event = { event_id: `hb-${n}-${t}`, tenant_id: 'hb', run_id: `r${n}`, task_id: `t${t}`, task_type: 'eval', environment: 'cpu-standard', status: 'success', finalized_at: new Date().toISOString(), rli_eval_usd: '1.05', task_hours: '0' };
      const tRequest = performance.now();
      await call(forge, 'POST', '/v1/events', event);
      const tResponse = performance.now();
      const last = Math.max(...(await stopped));
      const worst = last - tResponse;
      spentMicros += 1_050_000;
      if (t >= 3) {
        if (worst < 0) beforeResponse++;
        out.push(Math.max(0, worst));
        fromRequest.push(last - tRequest);
      }
      const reopened = f.when(true);
      await call(forge, 'POST', '/v1/guardrail/tenant:hb/lift', { reason: 'benchmark trial over' });
      await reopened;
      const cap = (spentMicros + 1_000_000) / 1e6;
      await call(forge, 'PUT', '/v1/budgets/tenant:hb', { reason: 'benchmark: next trial', B_day_soft: (cap - 0.5).toFixed(2), B_day_hard: cap.toFixed(2) });
    }
  } finally {
    await f.close();
    await forge.stop();
  }
  return { ms: out, fromRequest, beforeResponse };
}

/** Worst-of-N latency per trial, ms, for runners polling the durable state every pollMs. */
async function measurePolling(redis: RedisServer, n: number, trials: number, pollMs = 1000): Promise<number[]> {
  const keyPrefix = freshPrefix('bench-poll');
  const buses = Array.from({ length: n }, () => new RedisHaltBus({ url: redis.url, keyPrefix, onError: () => {} }));
  const pub = new RedisHaltBus({ url: redis.url, keyPrefix, onError: () => {} });
  const seen: Array<{ seq: number; at: number }> = buses.map(() => ({ seq: 0, at: 0 }));
  const timers = buses.map((b, i) => {
    // Pollers start at random phases, as independent processes would.
    let timer: NodeJS.Timeout | undefined;
    const poll = (): void => {
      b.current('global').then(
        (c) => {
          if (c && c.state === 'HARD_STOP' && c.seq > seen[i]!.seq) seen[i] = { seq: c.seq, at: performance.now() };
        },
        () => {},
      );
    };
    const start = setTimeout(() => {
      poll();
      timer = setInterval(poll, pollMs);
    }, Math.random() * pollMs);
    return () => {
      clearTimeout(start);
      if (timer) clearInterval(timer);
    };
  });
  const out: number[] = [];
  try {
    await new Promise((r) => setTimeout(r, pollMs + 50));
    for (let t = 1; t <= trials; t++) {
      const seq = 2 * t - 1;
      const t0 = performance.now();
      await pub.publish(change(seq, 'HARD_STOP'));
      while (!seen.every((s) => s.seq >= seq)) await new Promise((r) => setTimeout(r, 5));
      out.push(Math.max(...seen.map((s) => s.at)) - t0);
      await pub.publish(change(seq + 1, 'NORMAL'));
      // A random gap so the publish does not lock into the pollers' phase.
      await new Promise((r) => setTimeout(r, 100 + Math.random() * pollMs));
    }
  } finally {
    for (const stop of timers) stop();
    await pub.close();
    await Promise.all(buses.map((b) => b.close()));
  }
  return out;
}

/** Once: metric flips on /metrics -> Prometheus (default intervals) -> Alertmanager (default group_wait) -> webhook. */
async function measurePrometheusPath(): Promise<{ ms: number; note: string }> {
  let state = 0;
  let fired: ((t: number) => void) | undefined;
  const metrics: Server = createServer((req, res) => {
    if (req.url === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      res.end(`# HELP forge_guardrail_state Guard state (0 NORMAL, 1 WARNING, 2 HARD_STOP, 3 EMERGENCY_STOP)\n# TYPE forge_guardrail_state gauge\nforge_guardrail_state{scope="global"} ${state}\n`);
      return;
    }
    req.resume();
    req.on('end', () => {
      if (req.url === '/webhook') fired?.(performance.now());
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((r) => metrics.listen(0, '127.0.0.1', () => r()));
  const port = (metrics.address() as AddressInfo).port;
  const am = await startAlertmanager(
    ['route:', '  receiver: hook', 'receivers:', '  - name: hook', '    webhook_configs:', `      - url: http://127.0.0.1:${port}/webhook`, ''].join('\n'),
  );
  const prom = await startPrometheusWithRules(
    [
      // No scrape_interval / evaluation_interval: Prometheus' defaults (1 m each).
      'rule_files: [rules.yml]',
      'alerting:',
      '  alertmanagers:',
      `    - static_configs: [{ targets: ["${am.url.replace('http://', '')}"] }]`,
      'scrape_configs:',
      '  - job_name: forge',
      `    static_configs: [{ targets: ["127.0.0.1:${port}"] }]`,
      '',
    ].join('\n'),
    { 'rules.yml': ['groups:', '  - name: forge', '    rules:', '      - alert: ForgeHardStop', '        expr: forge_guardrail_state >= 2', ''].join('\n') },
  );
  try {
    // Let Prometheus settle into its schedule, then breach at a random point of it.
    await new Promise((r) => setTimeout(r, 5_000 + Math.random() * 60_000));
    const hit = new Promise<number>((r) => (fired = r));
    const t0 = performance.now();
    state = 2;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<number>((_, rej) => (timer = setTimeout(() => rej(new Error('no alert within 5 minutes')), 300_000)));
    const t1 = await Promise.race([hit, timeout]).finally(() => clearTimeout(timer));
    return { ms: t1 - t0, note: 'Prometheus 2.42 + Alertmanager 0.25 (Debian), default scrape/evaluation interval 1 m, group_wait 30 s, alert without `for`; measured once.' };
  } finally {
    await prom.stop();
    await am.stop();
    await new Promise<void>((r) => metrics.close(() => r()));
  }
}

const bench: Benchmark = {
  name: 'halt',
  description:
    'Breach to halt: from the HTTP response accepting the breaching cost event (a Forge API process on Redis) until every one of N runners (own Redis connections, one process) has closed its intake, and from the bare bus publish; worst of N per trial, p50 and p99 over trials. Baseline: runners polling the durable state every second; and once, a Prometheus + Alertmanager path with default intervals.',
  async run(size: BenchSize) {
    const redis = await startRedis();
    const rows: BenchRow[] = [];
    const notes: string[] = [];
    try {
      for (const n of size === 'tiny' ? [1, 10] : [1, 10, 100]) {
        const trials = size === 'tiny' ? 5 : n === 100 ? 100 : 200;
        const push = (await measurePush(redis, n, trials)).sort((a, b) => a - b);
        const poll = (await measurePolling(redis, n, size === 'tiny' ? 2 : 15)).sort((a, b) => a - b);
        const http = await measureFromHttp(redis, n, size === 'tiny' ? 3 : n === 100 ? 50 : 100);
        const fromHttp = http.ms.sort((a, b) => a - b);
        const fromRequest = http.fromRequest.sort((a, b) => a - b);
        const runners = `${n} runner${n > 1 ? 's' : ''}`;
        const vsPolling = (metric: string, sorted: number[], p: number): BenchRow => {
          const v = percentile(sorted, p);
          const b = percentile(poll, p);
          const r = ratio(v, b);
          return { metric: `${metric}, p${p}`, value: v, unit: 'ms', baselineLabel: 'polling the durable state every 1 s', baseline: b, ...(r !== undefined ? { ratio: r } : {}), ...(p === 99 ? { target: 'p99 in milliseconds' } : {}) };
        };
        for (const p of [50, 99]) rows.push(vsPolling(`halt reaches all ${runners}`, push, p));
        for (const p of [50, 99]) rows.push(vsPolling(`HTTP response accepting the breaching event -> all ${runners} stopped`, fromHttp, p));
        rows.push(vsPolling(`HTTP request with the breaching event sent -> all ${runners} stopped`, fromRequest, 50));
        notes.push(
          `N=${n}: ${push.length} pushed trials (after 3 warm-up), ${poll.length} polling trials, ${fromHttp.length} breaches over HTTP (${http.beforeResponse} of them had every runner stopped before the HTTP response arrived: counted as 0 ms).`,
        );
      }
      if (size === 'full' && process.env.FORGE_BENCH_SKIP_PROMETHEUS !== '1') {
        // The conservative figure: from the request carrying the breaching event (its store commit included).
        const fwd = rows.find((r) => r.metric === 'HTTP request with the breaching event sent -> all 1 runner stopped, p50');
        const pam = await measurePrometheusPath();
        rows.push({
          metric: 'breach to halt (request with the breaching event sent -> 1 runner stopped, p50 above) vs alert webhook',
          value: fwd?.value ?? NaN,
          unit: 'ms',
          baselineLabel: 'Prometheus + Alertmanager, default intervals (once)',
          baseline: pam.ms,
          ...(fwd && ratio(fwd.value, pam.ms) !== undefined ? { ratio: ratio(fwd.value, pam.ms)! } : {}),
        });
        notes.push(pam.note);
      }
      notes.push(
        'All runners share one Node process and event loop, so N=100 includes serial message handling that separate runner processes would not have. "halt reaches" rows start at the bus publish; "HTTP response" rows run the whole path through a Forge API process (collector, store commit, rules, Redis halt bus) and start when the client has the 200 for the breaching event.',
      );
    } finally {
      await redis.stop();
    }
    return { rows, notes };
  },
};

export default bench;

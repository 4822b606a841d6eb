import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The platform's own health, in Prometheus terms (prom-client): process metrics (event loop delay, heap,
 * GC, CPU: prom-client's default metrics, prefixed `forge_process_`), the API's requests, errors and
 * latency per route, and a runner's queue depth, tasks in flight, concurrency, heartbeats and kills per
 * queue. The cost metrics stay in ForgeMetrics (OpenTelemetry, canonical names); /metrics serves both.
 */
export interface PlatformMetricsOptions {
  /** `forge-api` or `forge-runner`: the `service` label of every series. */
  service: 'forge-api' | 'forge-runner';
  /** Collect prom-client's default process metrics (default true). */
  processMetrics?: boolean;
}

const LATENCY_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class PlatformMetrics {
  readonly registry = new Registry();
  readonly #requests: Counter<'route' | 'method' | 'status'>;
  readonly #errors: Counter<'route' | 'method' | 'status'>;
  readonly #latency: Histogram<'route' | 'method'>;
  readonly #queueDepth: Gauge<'queue'>;
  readonly #inFlight: Gauge<'queue'>;
  readonly #concurrency: Gauge<'queue'>;
  readonly #heartbeats: Counter<'queue'>;
  readonly #lastHeartbeat: Gauge<'queue'>;
  readonly #kills: Counter<'queue' | 'reason'>;
  readonly #intakeOpen: Gauge<'queue'>;

  constructor(opts: PlatformMetricsOptions) {
    this.registry.setDefaultLabels({ service: opts.service });
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'forge_process_' });
    const r = [this.registry];
    this.#requests = new Counter({ name: 'forge_api_requests_total', help: 'HTTP requests answered, by route template, method and status', labelNames: ['route', 'method', 'status'], registers: r });
    this.#errors = new Counter({ name: 'forge_api_request_errors_total', help: 'HTTP requests answered 5xx, by route template', labelNames: ['route', 'method', 'status'], registers: r });
    this.#latency = new Histogram({ name: 'forge_api_request_duration_seconds', help: 'HTTP request latency by route template, seconds', labelNames: ['route', 'method'], buckets: LATENCY_BUCKETS_S, registers: r });
    this.#queueDepth = new Gauge({ name: 'forge_runner_queue_depth', help: 'Tasks waiting in the queue (waiting + delayed)', labelNames: ['queue'], registers: r });
    this.#inFlight = new Gauge({ name: 'forge_runner_tasks_in_flight', help: 'Tasks running in this runner', labelNames: ['queue'], registers: r });
    this.#concurrency = new Gauge({ name: 'forge_runner_concurrency', help: 'Tasks this runner may run at once', labelNames: ['queue'], registers: r });
    this.#heartbeats = new Counter({ name: 'forge_runner_heartbeats_total', help: 'Runner liveness beats (one per interval while the runner is alive)', labelNames: ['queue'], registers: r });
    this.#lastHeartbeat = new Gauge({ name: 'forge_runner_last_heartbeat_timestamp_seconds', help: 'When the runner last beat, Unix seconds', labelNames: ['queue'], registers: r });
    this.#kills = new Counter({ name: 'forge_runner_kills_total', help: 'Tasks the runner aborted, by reason (hung, emergency, anomaly)', labelNames: ['queue', 'reason'], registers: r });
    this.#intakeOpen = new Gauge({ name: 'forge_runner_intake_open', help: '1 while the runner takes new tasks, 0 while a halt pauses it', labelNames: ['queue'], registers: r });
  }

  /** One answered request; `route` is the route template (never the raw URL: bounded cardinality). */
  recordRequest(route: string, method: string, status: number, seconds: number): void {
    const s = String(status);
    this.#requests.inc({ route, method, status: s });
    if (status >= 500) this.#errors.inc({ route, method, status: s });
    this.#latency.observe({ route, method }, seconds);
  }

  /** Creates a route's series at 0, so rate() and error ratios exist before the first request. */
  declareRoute(route: string, method: string): void {
    this.#requests.inc({ route, method, status: '200' }, 0);
    this.#errors.inc({ route, method, status: '500' }, 0);
  }

  /** The runner's queue: the gauges read at beat time, one heartbeat. */
  runnerBeat(queue: string, s: { queueDepth: number; inFlight: number; concurrency: number; intakeOpen: boolean; nowMs: number }): void {
    this.#queueDepth.set({ queue }, s.queueDepth);
    this.#inFlight.set({ queue }, s.inFlight);
    this.#concurrency.set({ queue }, s.concurrency);
    this.#intakeOpen.set({ queue }, s.intakeOpen ? 1 : 0);
    this.#heartbeats.inc({ queue });
    this.#lastHeartbeat.set({ queue }, Math.floor(s.nowMs / 1000));
  }

  /** Series of a runner's kills at 0 from the start. */
  declareQueue(queue: string): void {
    for (const reason of ['hung', 'emergency', 'anomaly']) this.#kills.inc({ queue, reason }, 0);
  }

  recordKill(queue: string, reason: string): void {
    this.#kills.inc({ queue, reason });
  }

  /** Prometheus text exposition. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

import type { Attributes, Gauge, Histogram, ObservableGauge, UpDownCounter } from '@opentelemetry/api';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import {
  byComponent,
  componentSpec,
  COMPONENTS,
  parseScope,
  stateRank,
  microsToUsdNumber,
  type Bands,
  type Component,
  type ComponentMicros,
  type Micros,
  type ScopeKey,
  type GuardState,
  type StateChange,
} from '../rules/index.ts';
import { eventComponents, type CostEvent } from '../store/index.ts';

/**
 * Forge's canonical metrics on the OpenTelemetry SDK, exposed in Prometheus text format.
 *
 * Names are the cost model's, unchanged: Prometheus spells `forge.cost.total.day_usd` as
 * `forge_cost_total_day_usd`. Two choices keep the exporter from changing them:
 * - no instrument declares a `unit` (the exporter would print a `# UNIT` line and newer exporters append
 *   the unit to the name); units are in the descriptions and the names (`_usd`, `.count`);
 * - the `.count` metrics are UpDownCounters that only ever go up: the exporter appends `_total` to
 *   monotonic counters (`forge_tasks_finalized_count_total`); an UpDownCounter is exposed as a gauge
 *   under its own name. rate()/increase() work on it as on any counter (resets are handled alike).
 * Histograms expose the usual `_bucket`, `_sum` and `_count` series.
 *
 * Labels: `scope` (global, tenant:<id>, run:<tenant>/<run>), `tenant`, `component` (health metrics),
 * `status` / `code` where noted. Scopes and tenants beyond the configured caps fold into the value
 * `__overflow__`, so a runaway number of runs cannot blow up the series count.
 */
export const OVERFLOW_LABEL = '__overflow__';

export interface ForgeMetricsOptions {
  /** Distinct scope label values kept before folding into __overflow__ (default 500). */
  maxScopes?: number;
  /** Distinct tenant label values kept (default 200). */
  maxTenants?: number;
  /** service.name of the resource (default "forge"). */
  serviceName?: string;
}

/** Day, week and run totals of one scope, USD micros; components are the day's totals by component. */
export interface ScopeTotals {
  dayMicros: Micros;
  weekMicros: Micros;
  runMicros: Micros;
  components: ComponentMicros;
}

const OP_BUCKETS_USD = [0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000];
const FLUSH_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Per-tenant task tallies behind the ratio gauges (integers; USD micros for cost). */
interface TaskTally {
  finalized: number;
  successful: number;
  retried: number;
  totalMicros: number;
}

class LabelCap {
  private readonly seen = new Set<string>();
  constructor(private readonly max: number) {}
  of(v: string): string {
    if (this.seen.has(v)) return v;
    if (this.seen.size >= this.max) return OVERFLOW_LABEL;
    this.seen.add(v);
    return v;
  }
}

/** One tenant's series of an OpHistogram: per-bucket counts (the last is +Inf), sum and count. */
interface OpSeries {
  counts: number[];
  sum: number;
  count: number;
}

/**
 * A per-operation cost histogram (forge.cost.<component>.op_usd), kept here rather than in the SDK: an ingest
 * request records up to a thousand events with seven values each, and the SDK's record() hashes the attribute
 * set on every call (8% of the ingest's main thread in the profile). Here a tenant's series is looked up once
 * per batch and a value is one bucket search. Exposed as the SDK's Prometheus exporter exposes a histogram:
 * cumulative, `_count`, `_sum`, then `_bucket` by `le` (a value equal to a bound is counted in its bucket).
 */
class OpHistogram {
  readonly #name: string;
  readonly #help: string;
  readonly #bounds: readonly number[];
  readonly #series = new Map<string, OpSeries>();

  constructor(name: string, description: string, bounds: readonly number[]) {
    this.#name = name.replace(/\./g, '_');
    this.#help = `# HELP ${this.#name} ${escapeText(description)}\n# TYPE ${this.#name} histogram\n`;
    this.#bounds = bounds;
  }

  seriesOf(tenant: string): OpSeries {
    let s = this.#series.get(tenant);
    if (!s) this.#series.set(tenant, (s = { counts: new Array<number>(this.#bounds.length + 1).fill(0), sum: 0, count: 0 }));
    return s;
  }

  record(s: OpSeries, value: number): void {
    // As the SDK: a negative value is not recorded.
    if (value < 0) return;
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    s.counts[i] = (s.counts[i] as number) + 1;
    s.sum += value;
    s.count += 1;
  }

  /** The exposition text, each line ending in a newline; empty while nothing was recorded. */
  render(): string {
    if (this.#series.size === 0) return '';
    let out = this.#help;
    for (const [tenant, s] of this.#series) {
      const label = `tenant="${escapeText(tenant).replace(/"/g, '\\"')}"`;
      out += `${this.#name}_count{${label}} ${s.count}\n${this.#name}_sum{${label}} ${s.sum}\n`;
      let cumulative = 0;
      for (let i = 0; i < s.counts.length; i++) {
        cumulative += s.counts[i] as number;
        out += `${this.#name}_bucket{${label},le="${i < this.#bounds.length ? String(this.#bounds[i]) : '+Inf'}"} ${cumulative}\n`;
      }
    }
    return out;
  }
}

/** Backslashes and newlines escaped, as in the exposition format's HELP text and label values. */
function escapeText(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

export class ForgeMetrics {
  readonly exporter: PrometheusExporter;
  private readonly provider: MeterProvider;
  private readonly serializer: PrometheusSerializer;
  private readonly scopes: LabelCap;
  private readonly tenants: LabelCap;

  // One instrument per component of COMPONENT_SPECS, named forge.cost.<component>.op_usd / .day_usd.
  private readonly opUsd: Record<Component | 'total', OpHistogram>;
  /** opUsd in exposition order: COMPONENTS, then total. */
  private readonly opUsdList: OpHistogram[];
  private readonly dayUsd: Record<Component | 'total', Gauge>;
  private readonly weekUsd: Gauge;
  private readonly runUsd: Gauge;
  private readonly finalized: UpDownCounter;
  private readonly failed: UpDownCounter;
  private readonly retried: UpDownCounter;
  private readonly evaluated: UpDownCounter;
  private readonly tallies = new Map<string, TaskTally>();
  private readonly budget: Record<'day_soft' | 'day_hard' | 'week_soft' | 'week_hard' | 'run_cap' | 'unit_cap', Gauge>;
  private readonly guardState: Gauge;
  private readonly stopWarning: UpDownCounter;
  private readonly stopHard: UpDownCounter;
  private readonly stopEmergency: UpDownCounter;
  private readonly bufferDepth: ObservableGauge;
  private depthSources: Array<() => number> = [];
  private readonly textSources: Array<() => Promise<string>> = [];
  private readonly flushSeconds: Histogram;
  private readonly flushedEvents: UpDownCounter;
  private readonly flushFailures: UpDownCounter;
  private readonly accepted: UpDownCounter;
  private readonly rejected: UpDownCounter;

  constructor(opts: ForgeMetricsOptions = {}) {
    this.scopes = new LabelCap(opts.maxScopes ?? 500);
    this.tenants = new LabelCap(opts.maxTenants ?? 200);
    const exporterOpts = { preventServerStart: true, withoutScopeInfo: true } as const;
    this.exporter = new PrometheusExporter(exporterOpts);
    this.serializer = new PrometheusSerializer('', false, undefined, false, true);
    this.provider = new MeterProvider({
      resource: resourceFromAttributes({ 'service.name': opts.serviceName ?? 'forge' }),
      readers: [this.exporter],
      // A backstop behind the label caps above: the SDK folds anything further into otel.metric.overflow.
      views: [{ instrumentName: '*', aggregationCardinalityLimit: 4 * (opts.maxScopes ?? 500) + 100 }],
    });
    const m = this.provider.getMeter('forge');
    const hist = (name: string, description: string, buckets = OP_BUCKETS_USD) =>
      m.createHistogram(name, { description, advice: { explicitBucketBoundaries: buckets } });
    const count = (name: string, description: string) => m.createUpDownCounter(name, { description });

    const opHist = (c: Component) => {
      const spec = componentSpec(c);
      const what = spec.accrual === 'daily' ? `${spec.what} allocated to one finalized task` : `${spec.what} of one finalized task`;
      return new OpHistogram(`forge.cost.${c}.op_usd`, `Cost_${c}_op: ${what}, USD`, OP_BUCKETS_USD);
    };
    this.opUsd = { ...byComponent(opHist), total: new OpHistogram('forge.cost.total.op_usd', 'Cost_total_op: total cost of one finalized task, USD', OP_BUCKETS_USD) };
    this.opUsdList = [...COMPONENTS.map((c) => this.opUsd[c]), this.opUsd.total];
    const dayGauge = (c: Component | 'total') => m.createGauge(`forge.cost.${c}.day_usd`, { description: `${c === 'total' ? 'Cost_total_day' : `${c} cost`} of the scope for the current UTC day, USD` });
    this.dayUsd = { ...byComponent(dayGauge), total: dayGauge('total') };
    this.weekUsd = m.createGauge('forge.cost.total.week_usd', { description: 'Cost_total_week: the scope\'s rolling 7 UTC days (today included), USD' });
    this.runUsd = m.createGauge('forge.cost.total.run_usd', { description: 'Cost_total_run: the scope\'s cumulative spend, USD' });
    this.finalized = count('forge.tasks.finalized.count', 'Finalized tasks accepted (monotonic)');
    this.failed = count('forge.tasks.failed.count', 'Finalized tasks with status failed (monotonic)');
    this.retried = count('forge.tasks.retried.count', 'Finalized tasks with status retried (monotonic)');
    this.evaluated = count('forge.tasks.evaluated.count', 'Finalized tasks that carried an evaluation (an RLI fee), monotonic');
    // Ratios of the tallies since the process started, read at scrape time (integer sums, divided once).
    const ratio = (name: string, description: string, f: (t: TaskTally) => number | undefined): void => {
      m.createObservableGauge(name, { description }).addCallback((r) => {
        for (const [tenant, t] of this.tallies) {
          const v = f(t);
          if (v !== undefined) r.observe(v, { tenant });
        }
      });
    };
    ratio('forge.tasks.retry_rate', 'Retried / finalized tasks since the process started (0..1)', (t) => (t.finalized > 0 ? t.retried / t.finalized : undefined));
    ratio('forge.cost.usd_per_successful_task', 'Total cost / successful tasks since the process started, USD', (t) => (t.successful > 0 ? microsToUsdNumber(Math.round(t.totalMicros / t.successful)) : undefined));
    ratio('forge.cost.usd_per_accepted_task', 'Total cost / tasks Forge accepted (every finalized task, any status) since the process started, USD', (t) => (t.finalized > 0 ? microsToUsdNumber(Math.round(t.totalMicros / t.finalized)) : undefined));
    const band = (k: string, what: string) => m.createGauge(`forge.budget.${k}_usd`, { description: `${what} of the scope, USD` });
    this.budget = {
      day_soft: band('day_soft', 'B_day_soft'),
      day_hard: band('day_hard', 'B_day_hard'),
      week_soft: band('week_soft', 'B_week_soft'),
      week_hard: band('week_hard', 'B_week_hard'),
      run_cap: band('run_cap', 'B_run_cap'),
      unit_cap: band('unit_cap', 'B_unit_cap'),
    };
    this.guardState = m.createGauge('forge.guardrail.state', { description: 'Guardrail state of the scope: 0 NORMAL, 1 WARNING, 2 HARD_STOP, 3 EMERGENCY_STOP' });
    this.stopWarning = count('forge.stop_condition.warning.count', 'Escalations into WARNING (monotonic)');
    this.stopHard = count('forge.stop_condition.hard_stop.count', 'Escalations into HARD_STOP (monotonic)');
    this.stopEmergency = count('forge.stop_condition.emergency_stop.count', 'Escalations into EMERGENCY_STOP (monotonic)');
    this.bufferDepth = m.createObservableGauge('forge.collector.buffer.depth', { description: 'Events waiting in the write buffer (collector and store writer)' });
    this.bufferDepth.addCallback((r) => {
      let n = 0;
      for (const f of this.depthSources) {
        try {
          n += f();
        } catch {
          /* a failing source reads as 0 */
        }
      }
      r.observe(n, { component: 'collector' });
    });
    this.flushSeconds = hist('forge.collector.flush.seconds', 'Duration of one batch write to the store, seconds', FLUSH_BUCKETS_S);
    this.flushedEvents = count('forge.collector.flushed_events.count', 'Events written to the store by the collector (monotonic)');
    this.flushFailures = count('forge.collector.flush_failures.count', 'Batch writes that failed (monotonic)');
    this.accepted = count('forge.collector.accepted.count', 'Events durably accepted (monotonic)');
    this.rejected = count('forge.collector.rejected.count', 'Events rejected, by error code (monotonic)');
    // Health series exist (at 0) from the start, so absent() alerts and first scrapes behave.
    this.flushFailures.add(0, { component: 'collector' });
    this.accepted.add(0, { component: 'collector' });
    // The stop-condition counts read 0 on a fresh start (global scope), not absent until a first escalation.
    const global = { scope: 'global', tenant: '' };
    this.stopWarning.add(0, global);
    this.stopHard.add(0, global);
    this.stopEmergency.add(0, global);
  }

  private scopeAttrs(scope: ScopeKey): Attributes {
    const p = parseScope(scope);
    const s = this.scopes.of(scope);
    const tenant = p?.tenantId !== undefined ? this.tenants.of(p.tenantId) : '';
    return { scope: s, tenant };
  }

  /**
   * Accepted (durably stored) finalized tasks, as recordEvent each, with the counters added once per tenant
   * of the batch rather than once per event (an ingest request carries up to a thousand).
   */
  recordEvents(events: readonly CostEvent[]): void {
    if (events.length === 1) {
      this.recordEvent(events[0] as CostEvent);
      return;
    }
    const byTenant = new Map<string, { a: Attributes; op: OpSeries[]; finalized: number; failed: number; retried: number; evaluated: number; successful: number; totalMicros: number }>();
    for (const ev of events) {
      let g = byTenant.get(ev.tenantId);
      if (!g) {
        const tenant = this.tenants.of(ev.tenantId);
        byTenant.set(ev.tenantId, (g = { a: { tenant }, op: this.opUsdList.map((h) => h.seriesOf(tenant)), finalized: 0, failed: 0, retried: 0, evaluated: 0, successful: 0, totalMicros: 0 }));
      }
      this.recordOp(ev, g.op);
      g.finalized += 1;
      if (ev.status === 'failed') g.failed += 1;
      if (ev.status === 'retried') g.retried += 1;
      if (ev.status === 'success') g.successful += 1;
      if (ev.rliMicros > 0) g.evaluated += 1;
      g.totalMicros += ev.totalMicros;
    }
    for (const g of byTenant.values()) {
      this.finalized.add(g.finalized, g.a);
      this.failed.add(g.failed, g.a);
      this.retried.add(g.retried, g.a);
      this.evaluated.add(g.evaluated, g.a);
      const tenant = g.a.tenant as string;
      const t = this.tallies.get(tenant) ?? { finalized: 0, successful: 0, retried: 0, totalMicros: 0 };
      t.finalized += g.finalized;
      t.successful += g.successful;
      t.retried += g.retried;
      t.totalMicros += g.totalMicros;
      this.tallies.set(tenant, t);
    }
  }

  /** One accepted (durably stored) finalized task: per-operation histograms and task counters. */
  recordEvent(ev: CostEvent): void {
    const a = { tenant: this.tenants.of(ev.tenantId) };
    this.recordOp(ev, this.opUsdList.map((h) => h.seriesOf(a.tenant)));
    this.finalized.add(1, a);
    // Adding 0 creates the series, so failure-rate queries see a 0 rather than nothing.
    this.failed.add(ev.status === 'failed' ? 1 : 0, a);
    this.retried.add(ev.status === 'retried' ? 1 : 0, a);
    this.evaluated.add(ev.rliMicros > 0 ? 1 : 0, a);
    const t = this.tallies.get(a.tenant) ?? { finalized: 0, successful: 0, retried: 0, totalMicros: 0 };
    t.finalized += 1;
    if (ev.status === 'success') t.successful += 1;
    if (ev.status === 'retried') t.retried += 1;
    t.totalMicros += ev.totalMicros;
    this.tallies.set(a.tenant, t);
  }

  /** One event's amounts into the op_usd histograms; `series` is the tenant's series of each, in opUsdList order. */
  private recordOp(ev: CostEvent, series: readonly OpSeries[]): void {
    const amounts = eventComponents(ev);
    for (let k = 0; k < COMPONENTS.length; k++) this.opUsd[COMPONENTS[k] as Component].record(series[k] as OpSeries, microsToUsdNumber(amounts[COMPONENTS[k] as Component]));
    this.opUsd.total.record(series[COMPONENTS.length] as OpSeries, microsToUsdNumber(ev.totalMicros));
  }

  /** The scope's day / week / run totals and the day's components, as the live ledger or rollup knows them. */
  setScopeTotals(scope: ScopeKey, t: ScopeTotals): void {
    const a = this.scopeAttrs(scope);
    this.dayUsd.total.record(microsToUsdNumber(t.dayMicros), a);
    this.weekUsd.record(microsToUsdNumber(t.weekMicros), a);
    this.runUsd.record(microsToUsdNumber(t.runMicros), a);
    for (const c of COMPONENTS) this.dayUsd[c].record(microsToUsdNumber(t.components[c]), a);
  }

  /** The scope's budget bands (USD micros). */
  setBudgets(scope: ScopeKey, b: Pick<Bands, 'daySoft' | 'dayHard' | 'weekSoft' | 'weekHard' | 'runCap' | 'unitCap'>): void {
    const a = this.scopeAttrs(scope);
    this.budget.day_soft.record(microsToUsdNumber(b.daySoft), a);
    this.budget.day_hard.record(microsToUsdNumber(b.dayHard), a);
    this.budget.week_soft.record(microsToUsdNumber(b.weekSoft), a);
    this.budget.week_hard.record(microsToUsdNumber(b.weekHard), a);
    this.budget.run_cap.record(microsToUsdNumber(b.runCap), a);
    this.budget.unit_cap.record(microsToUsdNumber(b.unitCap), a);
  }

  /** The scope's current guardrail state (forge.guardrail.state) without counting an escalation: at start, after the rebuild. */
  setState(scope: ScopeKey, state: GuardState): void {
    this.guardState.record(stateRank(state), this.scopeAttrs(scope));
  }

  /** A guardrail state change: sets forge.guardrail.state and counts escalations (not de-escalations) by level. */
  recordStateChange(change: StateChange): void {
    const a = this.scopeAttrs(change.scope);
    this.guardState.record(stateRank(change.state), a);
    const up = stateRank(change.state) > stateRank(change.previous);
    // Every level's series exists (at 0) once the scope has changed state, so increase() sees resets right.
    this.stopWarning.add(up && change.state === 'WARNING' ? 1 : 0, a);
    this.stopHard.add(up && change.state === 'HARD_STOP' ? 1 : 0, a);
    this.stopEmergency.add(up && change.state === 'EMERGENCY_STOP' ? 1 : 0, a);
  }

  // ---- collector health ----
  /** Adds a source of buffered-event counts (the collector's batcher, the store writer's queue), read at scrape time. */
  addBufferDepthSource(fn: () => number): void {
    this.depthSources.push(fn);
  }
  recordFlush(seconds: number, events: number, ok: boolean): void {
    this.flushSeconds.record(seconds, { component: 'collector', outcome: ok ? 'ok' : 'error' });
    if (ok) this.flushedEvents.add(events, { component: 'collector' });
    else this.flushFailures.add(1, { component: 'collector' });
  }
  recordAccepted(n: number): void {
    if (n > 0) this.accepted.add(n, { component: 'collector' });
  }
  recordRejected(code: string, n = 1): void {
    if (n > 0) this.rejected.add(n, { component: 'collector', code });
  }

  /** Appends another registry's exposition (PlatformMetrics: API, runner, process) to render(). */
  addTextSource(fn: () => Promise<string>): void {
    this.textSources.push(fn);
  }

  /**
   * The Prometheus text exposition (format 0.0.4) of every metric. `tenantSeries: false` leaves out every
   * series about one tenant (a tenant label, or a tenant or run scope): what public metrics may show.
   */
  async render(opts: { tenantSeries?: boolean } = {}): Promise<string> {
    const { resourceMetrics } = await this.exporter.collect();
    let text = this.serializer.serialize(resourceMetrics);
    for (const h of this.opUsdList) text += h.render();
    for (const f of this.textSources) text += `\n${await f()}`;
    if (opts.tenantSeries !== false) return text;
    const tenantLabelled = /[{,]\s*(tenant="[^"]|scope="(tenant|run):)/;
    return text
      .split('\n')
      .filter((line) => line.startsWith('#') || !tenantLabelled.test(line))
      .join('\n');
  }

  async shutdown(): Promise<void> {
    await this.provider.shutdown();
  }
}

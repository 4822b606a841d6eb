import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { AlertDispatcher, BillingAlertNotifier, IncidentLog, loadAlertsConfig, monthTrendAnomalies, projectedBreachAnomalies, type AnomalyAlert, storeAlertHistory, storeAlertLogSink } from '../alerts/index.ts';
import { accountPartsFromConfig, agentRoutes, alertRoutes, anomalyRoutes, billingRoutes, evalRoutes, incidentRoutes, buildApp, ConfigError, KeyStore, loadConfig, reportRoutes, TenantRegistry, tenantRoutes, type ForgeConfig } from '../api/index.ts';
import { billingFromConfig } from '../billing/index.ts';
import { collectorRoutes, ForgeMetrics, PlatformMetrics, loadPricing, priceTaskBounds, viemChain, type Pricing } from '../collector/index.ts';
import { billingPageRoutes, burnPageRoutes, sqlSource } from '../dashboards/index.ts';
import { AgentStore, EvalResults, EvalSuiteRegistry, evalPageRoutes, SHIPPED_SUITES_DIR } from '../eval/index.ts';
import { embeddedEvalLauncher } from './eval-engine.ts';
import {
  CostBaseline,
  Guardrail,
  INTAKE_KINDS,
  InProcessHaltBus,
  IntakeGate,
  InProcessLedger,
  RedisHaltBus,
  RedisLedger,
  RedisSharedSpend,
  RedisWriterSlot,
  capCountersFromLog,
  capCountersOfRows,
  ControlSnapshots,
  changeOfAuditRow,
  rebuildControlState,
  recompute,
  spendFromLog,
  spikeSummary,
  spendOfRows,
  type AuditRecord,
  type HaltBus,
  type LiveLedger,
  type LoadedSpend,
} from '../guard/index.ts';
import { parseBandsConfig, scopesOf, stateRank, storageDayCost, tenantScope, topComponent, type BandsBook, type ScopeKey } from '../rules/index.ts';
import { AccountTables, openStore, TenantTable, type Store } from '../store/index.ts';

export interface RunningForge {
  app: FastifyInstance;
  url: string;
  store: Store;
  guardrail: Guardrail;
  keys: KeyStore;
  config: ForgeConfig;
  /** The halt bus the guardrail publishes state changes on (in-process, or Redis with FORGE_REDIS_URL). */
  bus: HaltBus;
  /** Tenant intake pauses (execution spikes). */
  intake: IntakeGate;
  /** Agents uploaded for evaluation, and eval runs with their task results (eval/). */
  agents: AgentStore;
  evalResults: EvalResults;
  /** The price book the collector prices events with. */
  pricing: Pricing;
  /** How the start-up spend was loaded (a snapshot plus the log since it, or the whole log). */
  spendLoaded: LoadedSpend;
  /** Settles once the background check of the loaded spend (and the fresh snapshot after it) is done. */
  controlCheck: Promise<void>;
  /** Runs the hourly recompute now (tests, operators). */
  rollup(): Promise<void>;
  close(): Promise<void>;
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  /** Extra route plugins (billing, burn page) registered after the core routes. */
  plugins?: FastifyPluginAsync[];
  log?: (line: string) => void;
  now?: () => number;
}

function storageDayOf(pricing: Pricing): (scope: ScopeKey) => number {
  // Platform storage (pricing.storage) burns in the global scope; tenants and runs have none of their own.
  const global = storageDayCost(pricing.storage.gbStored, pricing.storage.gbMonthUsd);
  return (scope) => (scope === 'global' ? global : 0);
}

/**
 * `forge start`: one process with collector, rules, store, API and /metrics on the embedded default
 * (ClickHouse in-process under FORGE_DATA_DIR, in-process ledger and halt bus), or on a ClickHouse server
 * and Redis when FORGE_CLICKHOUSE_URL / FORGE_REDIS_URL are set.
 */
export async function startForge(opts: StartOptions = {}): Promise<RunningForge> {
  const config = loadConfig(opts.env ?? process.env);
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const now = opts.now ?? Date.now;
  // Set once the store is open; onError (needed before that) pages through it when present.
  const late: { alerts?: AlertDispatcher } = {};
  const onError = (e: unknown, where: string) => {
    log(`forge: ${where}: ${e instanceof Error ? `${(e as { code?: string }).code ?? e.name}: ${e.message}` : String(e)}`);
    // Failures of the collector, store or API page on-call too (deduplicated per day by the dispatcher).
    const component = /collector/.test(where) ? 'collector' : /store|writer|recompute/.test(where) ? 'store' : 'api';
    if (late.alerts && where !== 'alerts') void late.alerts.raise({ kind: 'component_failure', component, error: e instanceof Error ? e : String(e) }).catch(() => {});
  };

  // What is open, in opening order; closed in reverse on shutdown and when the start fails half way. A step
  // that fails is reported and the rest still close (the store last: it flushes the batch writer).
  const closers: Array<{ what: string; close: () => unknown }> = [];
  const closeAll = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse()) {
      try {
        await c.close();
      } catch (e) {
        onError(e, `shutdown: ${c.what}`);
      }
    }
  };

  const bands: BandsBook = parseBandsConfig(readFileSync(config.FORGE_BUDGETS_FILE, 'utf8'), config.FORGE_BUDGETS_FILE);
  const pricing = loadPricing(config.FORGE_PRICING_FILE ?? (existsSync('config/pricing.yaml') ? 'config/pricing.yaml' : undefined), opts.env ?? process.env);
  try {
    if (config.FORGE_CLICKHOUSE_CLUSTER && !config.FORGE_CLICKHOUSE_URL) throw new ConfigError('FORGE_CLICKHOUSE_CLUSTER: needs FORGE_CLICKHOUSE_URL (a cluster is a server deployment)');
    // Several API processes on one ClickHouse server append each on a stream of its own, a writer slot leased
    // in Redis (guard/writer-slot.ts), so no two take the same chain seq; one process on its embedded engine
    // (its data directory is its own) is stream 0. Released after the store's last flush.
    const slot = config.FORGE_CLICKHOUSE_URL && config.FORGE_REDIS_URL ? await RedisWriterSlot.claim({ url: config.FORGE_REDIS_URL, keyPrefix: config.FORGE_REDIS_PREFIX, onError: (e) => onError(e, 'writer slot') }) : undefined;
    if (slot) closers.push({ what: 'writer slot', close: () => slot.close() });
    const store = await openStore({
      ...(slot ? { stream: () => slot.stream } : {}),
      ...(config.FORGE_CLICKHOUSE_URL
        ? { url: config.FORGE_CLICKHOUSE_URL, username: config.FORGE_CLICKHOUSE_USER, password: config.FORGE_CLICKHOUSE_PASSWORD, database: config.FORGE_CLICKHOUSE_DATABASE, cluster: config.FORGE_CLICKHOUSE_CLUSTER }
        : { dataDir: join(config.FORGE_DATA_DIR, 'clickhouse') }),
      onError: (e) => onError(e, 'store writer'),
      writer: { flushIntervalMs: config.FORGE_FLUSH_INTERVAL_MS },
    } as Parameters<typeof openStore>[0]);
    closers.push({ what: 'store', close: () => store.close() });
    // The spend the guard rebuilds at start, as snapshots plus the log since them (guard/control-snapshot.ts).
    // Closed right before the store: once everything else stopped, the writer's last events are flushed and a
    // snapshot is taken, so the next start reads (almost) nothing of the log.
    const snapshots = new ControlSnapshots(store, { log });
    const background: { check?: Promise<void>; baseline?: Promise<void> } = {};
    closers.push({
      what: 'control snapshot',
      close: async () => {
        await background.check;
        await background.baseline;
        await store.writer.flush();
        await snapshots.take();
      },
    });
    // The log's current spend (held snapshot plus the log since it) once loaded; before that, a full scan.
    const logRunDays = async (t: number) => (snapshots.origin ? snapshots.runDays(t, { current: true }) : undefined);

    const ledger: LiveLedger = config.FORGE_REDIS_URL
      ? new RedisLedger({ url: config.FORGE_REDIS_URL, keyPrefix: config.FORGE_REDIS_PREFIX, commandTimeoutMs: config.FORGE_LEDGER_TIMEOUT_MS, onError: (e) => onError(e, 'ledger'), counterSeed: async () => {
            const rows = await logRunDays(now());
            return rows ? capCountersOfRows(rows, now()) : capCountersFromLog(store, now());
          },
        })
      : new InProcessLedger({ maxEventIds: config.FORGE_MAX_TRACKED_EVENTS });
    const bus: HaltBus = config.FORGE_REDIS_URL ? new RedisHaltBus({ url: config.FORGE_REDIS_URL, keyPrefix: config.FORGE_REDIS_PREFIX, onError: (e) => onError(e, 'halt bus') }) : new InProcessHaltBus();
    // The spend that drives the stop conditions, shared by every API process on the same Redis.
    const sharedSpend = config.FORGE_REDIS_URL ? new RedisSharedSpend({ url: config.FORGE_REDIS_URL, keyPrefix: config.FORGE_REDIS_PREFIX, commandTimeoutMs: config.FORGE_LEDGER_TIMEOUT_MS, onError: (e) => onError(e, 'shared spend') }) : undefined;
    closers.push({ what: 'ledger', close: () => ledger.close() }, { what: 'halt bus', close: () => bus.close() });
    if (sharedSpend) closers.push({ what: 'shared spend', close: () => sharedSpend.close() });
    await bus.ready();
    // Billing (plans, metering, credits, BYOK, Stripe) on the same store and halt bus; Stripe and BYOK stay
    // off until configured.
    const billing = await billingFromConfig({ config: config.billing, env: opts.env ?? process.env, store, bus, onError });
    closers.push({ what: 'billing', close: () => billing.close() });
    const metrics = new ForgeMetrics();
    // The platform's own health (API requests, errors, latency; process) on the same /metrics.
    const platformMetrics = new PlatformMetrics({ service: 'forge-api' });
    metrics.addTextSource(() => platformMetrics.render());
    closers.push({ what: 'metrics', close: () => metrics.shutdown() });
    const keys = await KeyStore.open(store, { importFile: join(config.FORGE_DATA_DIR, 'keys.json'), onError: (e) => onError(e, 'api keys') });
    closers.push({ what: 'api keys', close: () => keys.close() });
    const alerts = config.FORGE_ALERTS_FILE
      ? new AlertDispatcher({ config: loadAlertsConfig(config.FORGE_ALERTS_FILE, opts.env ?? process.env), sink: storeAlertLogSink(store), history: storeAlertHistory(store), onError: (e) => onError(e, 'alerts') })
      : undefined;
    late.alerts = alerts;
    alerts?.start();
    if (alerts) closers.push({ what: 'alerts', close: () => alerts.stop() });
    const alertOnChange = alerts?.listener();
    // An EMERGENCY_STOP opens an incident (kept in guardrail_events: every process, every restart).
    const incidents = new IncidentLog(store, { now });

    const audit = async (r: AuditRecord): Promise<void> => {
      await store.appendGuardrailEvents([
        { ...(r.eventId ? { eventId: r.eventId } : {}), at: r.at, kind: r.kind, scope: r.scope, state: r.state ?? '', previous: r.previous ?? '', seq: r.seq ?? 0, actor: r.actor, reason: r.reason, details: r.details ?? {} },
      ]);
    };
    const guardrail = new Guardrail({
      bands,
      ledger,
      bus,
      now,
      onChange: (c) => {
        metrics.recordStateChange(c);
        alertOnChange?.(c);
        incidents.onStateChange(c).catch((e: unknown) => onError(e, 'incidents'));
      },
      onAcknowledge: (scope, actor) => {
        if (alerts) void alerts.acknowledge(scope, actor).catch((e: unknown) => onError(e, 'alerts'));
      },
      audit,
      onError,
      storageDayMicros: storageDayOf(pricing),
      reservationTtlMs: config.FORGE_RESERVATION_TTL_MS,
      maxTrackedEvents: config.FORGE_MAX_TRACKED_EVENTS,
      onLedgerFailure: config.FORGE_ADMISSIONS_ON_LEDGER_FAILURE,
      ...(sharedSpend
        ? {
            sharedSpend,
            spendSeed: async () => {
              const rows = await logRunDays(now());
              return rows ? spendOfRows(rows) : spendFromLog(store, now());
            },
          }
        : {}),
    });
    closers.push({
      what: 'guardrail',
      close: async () => {
        await guardrail.drain();
        guardrail.close();
      },
    });
    for (const [scope, b] of bands.explicit) metrics.setBudgets(scope, b);

    // The control state from the two logs (and the bus's durable copy): a restart reaches the state it
    // had, with every acknowledgement, lift, budget version and hard day, and announces nothing twice. The
    // spend from the newest snapshot plus the log since it: readiness does not wait on the whole history.
    const publishTotals = (scope: ScopeKey): void => metrics.setScopeTotals(scope, guardrail.totals(scope));
    const loaded = await snapshots.load();
    const rebuilt = await rebuildControlState(guardrail, { store, bus, now: now(), unitCapOf: (scope) => guardrail.bandsFor(scope), onScope: publishTotals, runDays: await snapshots.runDays(now()), alsoKinds: INTAKE_KINDS });
    // An empty Redis (first start, or restarted without persistence) gets the log's spend before use.
    if (sharedSpend) await sharedSpend.seed(async () => rebuilt.spend);
    if (ledger instanceof RedisLedger) await ledger.ready();
    // The embedded ledger starts empty: the caps' counters come from the log, so they hold across a restart.
    if (ledger instanceof InProcessLedger) ledger.seed(rebuilt.capCounters);
    await guardrail.drain();
    // The rebuilt states announce nothing: publish them, so the status panels read a state (global NORMAL on
    // a fresh start) rather than nothing until the next change.
    for (const scope of new Set<ScopeKey>(['global', ...guardrail.knownScopes()])) metrics.setState(scope, guardrail.effectiveState(scope));
    // Pages an earlier life opened for stops that still hold are taken over (not sent again), so the lift
    // resolves them: from the audited guard changes of the scopes that are stopped now (read by the rebuild).
    if (alerts) {
      const stopped = new Set([...guardrail.knownScopes()].filter((scope) => stateRank(guardrail.effectiveState(scope)) >= stateRank('HARD_STOP')));
      if (stopped.size > 0) {
        const guardKinds = new Set<string>(['state_change', 'acknowledgement', 'override']);
        alerts.adoptOpenPages(rebuilt.events.filter((r) => guardKinds.has(r.kind) && stopped.has(r.scope)).map(changeOfAuditRow));
      }
    }
    // Tenant intake pauses (execution spikes) on a halt bus of their own (Redis: own key prefix), rebuilt
    // from guardrail_events and the bus's durable copy; a pause pages on-call (routes.intake_paused).
    const intakeBus: HaltBus = config.FORGE_REDIS_URL ? new RedisHaltBus({ url: config.FORGE_REDIS_URL, keyPrefix: `${config.FORGE_REDIS_PREFIX}intake:`, onError: (e) => onError(e, 'intake bus') }) : new InProcessHaltBus();
    closers.push({ what: 'intake bus', close: () => intakeBus.close() });
    await intakeBus.ready();
    const intake = new IntakeGate({
      bus: intakeBus,
      audit,
      now,
      onError,
      ...(config.FORGE_SPIKE_DETECTION
        ? {
            spike: {
              factor: config.FORGE_SPIKE_FACTOR,
              bucketMs: config.FORGE_SPIKE_BUCKET_MS,
              windowMs: config.FORGE_SPIKE_WINDOW_MS,
              trailingMs: config.FORGE_SPIKE_TRAILING_MS,
              minCount: config.FORGE_SPIKE_MIN_COUNT,
              minTrailing: config.FORGE_SPIKE_MIN_TRAILING,
              minHistoryMs: config.FORGE_SPIKE_MIN_HISTORY_MS,
            },
          }
        : {}),
      coolDownMs: config.FORGE_SPIKE_COOLDOWN_MS,
      onPause: (spike) => {
        const told = spikeSummary(spike);
        if (alerts) void alerts.raiseIntakePause({ tenantId: spike.tenantId, ...told, detail: `${told.detail}; paused until an operator resumes it`, unit: 'count', at: spike.at }).catch((e: unknown) => onError(e, 'alerts'));
      },
      onResume: (s) => {
        if (alerts) void alerts.resolveIntakePause(s.tenantId).catch((e: unknown) => onError(e, 'alerts'));
      },
    });
    closers.push({
      what: 'intake',
      close: async () => {
        await intake.drain();
        intake.close();
      },
    });
    await intake.rebuild(rebuilt.events);
    // The operational pages an earlier life opened and did not resolve (hung tasks, failing components,
    // intake pauses) are taken over from the alert log, so their resolution here uses the keys they were
    // opened with and a repeated report sends nothing. Conditions are re-evaluated now: a pause resumed
    // meanwhile is resolved at once; a component page once this process listens (see below).
    const earlierComponentPages: string[] = [];
    if (alerts) {
      alerts.adoptLoggedPages(await store.alerts({ scope: { allTenants: true }, ...alerts.loggedPagesWindow(), limit: 100_000 }));
      const spikePaged = new Set(alerts.openIncidents().filter((p) => p.condition.startsWith('anomaly:execution_spike:') && p.scope.startsWith('tenant:')).map((p) => p.scope.slice(7)));
      for (const tenantId of spikePaged) if (!intake.paused(tenantId)) await alerts.resolveIntakePause(tenantId);
      earlierComponentPages.push(...alerts.openIncidents().filter((i) => i.condition.startsWith('component_failure:')).map((i) => i.condition.slice('component_failure:'.length)));
    }
    // Every admission asks it, whoever admits (the API, in-process runners, eval runs started here).
    guardrail.useIntake(intake);
    // The normal cost per task type (anomaly ceilings), learned from live events and, in the background once
    // listening (it reads up to 200,000 events: no part of readiness), from the log's recent successful tasks.
    const baseline = new CostBaseline();
    const rollup = async (): Promise<void> => {
      await recompute(guardrail, store, now(), publishTotals);
      await snapshots.take();
      // A month trending at 2x the average month (from mid-month) and a projected day breach: audited once
      // per subject (month, day), alerted on routes.anomaly.
      const t = now();
      const tenantScopes = guardrail.knownScopes().filter((s): s is `tenant:${string}` => s.startsWith('tenant:'));
      const found: AnomalyAlert[] = [
        ...(await monthTrendAnomalies(store, tenantScopes.map((s) => s.slice(7)), t)),
        ...projectedBreachAnomalies(tenantScopes.map((s) => ({ tenantId: s.slice(7), dayMicros: guardrail.totals(s).dayMicros, daySoftMicros: guardrail.bandsFor(s).daySoft, dayHardMicros: guardrail.bandsFor(s).dayHard })), t),
      ];
      for (const a of found) {
        await audit({ eventId: `anomaly:${a.anomaly}:${a.tenantId}:${a.subject}`, kind: 'anomaly', scope: `tenant:${a.tenantId}`, at: t, actor: 'forge', reason: `${a.anomaly}: ${a.detail}`, details: { anomaly: a.anomaly, subject: a.subject, value_micros: a.value, threshold_micros: a.threshold } });
        if (alerts) await alerts.raiseAnomaly(a);
      }
    };

    // Billing's burn alerts and failing BYOK keys reach the people they concern (their account emails, the
    // team's Slack), once per threshold and period across restarts (the alert log).
    const billingAlerts = alerts
      ? new BillingAlertNotifier({
          dispatcher: alerts,
          users: new AccountTables(store.client, store.database),
          burn: (tenantId) => {
            const t = guardrail.totals(tenantScope(tenantId));
            return { weekMicros: t.weekMicros, topComponent: topComponent(t.components) };
          },
          log,
          onError,
        })
      : undefined;

    // A tenant Forge knows: one with bands of its own, one an admin created (POST /v1/tenants, in the
    // store, seen by every process), or one an API key is bound to.
    const tenants = new TenantRegistry({
      fromBands: () => [...bands.explicit.keys()].flatMap((s) => (s.startsWith('tenant:') ? [s.slice(7)] : s.startsWith('run:') ? [s.slice(4, s.indexOf('/'))] : [])),
      fromKeys: () => keys.list().map((k) => k.tenantId),
      table: new TenantTable(store.client, store.database),
      now,
    });
    await tenants.refresh();
    const knownTenant = (tenantId: string): Promise<boolean> => tenants.has(tenantId);

    // Agents for evaluation: metadata in the store, ZIP bytes under the data dir by content hash.
    const agents = new AgentStore(store, join(config.FORGE_DATA_DIR, 'agents'), { now });
    const evalResults = new EvalResults(store);
    // Eval runs started over the API (POST /v1/eval/runs) run here; the Forge they run on is set below, once
    // it exists (the routes are registered before). Closed (runs aborted and awaited) before the rest.
    const self: { forge?: RunningForge } = {};
    const launcher = embeddedEvalLauncher(() => self.forge!, {
      suites: new EvalSuiteRegistry([SHIPPED_SUITES_DIR, ...(config.FORGE_EVAL_SUITES_DIR ? [config.FORGE_EVAL_SUITES_DIR] : [])]),
      maxRuns: config.FORGE_EVAL_MAX_RUNS,
      env: opts.env ?? process.env,
      onError,
    });
    // Web UI accounts (signup, 2FA, sessions, SSO) when FORGE_ACCOUNTS_SECRET_KEY is set.
    const accounts = accountPartsFromConfig(config, { store, tenants, now, onError });
    if (accounts) closers.push({ what: 'accounts', close: () => accounts.close() });

    const collector: FastifyPluginAsync = async (app) => {
      await app.register(collectorRoutes, {
        sink: store.writer,
        pricing,
        ...(pricing.chain?.rpcUrl ? { chain: viemChain(pricing.chain.rpcUrl) } : {}),
        knownTenant,
        canWriteTenant: (req, tenantId) => req.principal?.tenantId === null || req.principal?.tenantId === tenantId,
        onAccepted: async (events) => {
          await guardrail.ingest(events);
          // A task's final event ends its hung-task page (the kill is done).
          alerts?.tasksEnded(events);
          for (const ev of events) baseline.observe(ev);
          // Once per scope the batch touched: only the totals after the whole batch matter.
          for (const scope of new Set(events.flatMap((ev) => scopesOf(ev.tenantId, ev.runId)))) metrics.setScopeTotals(scope, guardrail.totals(scope));
        },
        onError: (e: unknown) => onError(e, 'collector'),
        metrics,
        metricsRoute: true,
        metricsPublic: config.FORGE_METRICS_PUBLIC,
        bodyLimit: config.FORGE_BODY_LIMIT_BYTES,
        now,
      });
    };

    // Admissions may send a task's bounds: priced from the same price book as its cost events (gas only
    // with a fixed native-token price: a chain read is no part of an admission).
    const fixedNative = pricing.nativePrice.source === 'fixed' ? pricing.nativePrice.usd : undefined;
    const app = await buildApp({
      guardrail,
      intake,
      keys,
      now,
      onError,
      priceBounds: (b) => priceTaskBounds(b, pricing, fixedNative),
      logLevel: config.FORGE_LOG_LEVEL === 'info' ? 'warn' : config.FORGE_LOG_LEVEL,
      bodyLimit: config.FORGE_BODY_LIMIT_BYTES,
      metricsPublic: config.FORGE_METRICS_PUBLIC,
      platformMetrics,
      tenants,
      ready: async () => {
        const checks: Record<string, string> = {};
        try {
          await store.dayTotal({ allTenants: true }, now());
          checks.store = 'ok';
        } catch (e) {
          checks.store = `unreachable: ${(e as { code?: string }).code ?? 'error'}`;
        }
        try {
          await ledger.snapshot('global', now());
          checks.ledger = 'ok';
        } catch (e) {
          checks.ledger = `unreachable: ${(e as { code?: string }).code ?? 'error'}`;
        }
        return { ok: Object.values(checks).every((v) => v === 'ok'), checks };
      },
      ...(accounts ? { accounts: accounts.parts } : {}),
      plugins: [
        async (app) => app.register(tenantRoutes, { tenants }),
        collector,
        async (app) => app.register(reportRoutes, { store, guardrail, now }),
        // The built-in burn page at `/` (no Grafana needed): the dashboards' SQL on the store's engine.
        async (app) =>
          app.register(burnPageRoutes, {
            store: sqlSource(store.client, store.database),
            guardrailStates: () => guardrail.knownScopes().map((scope) => ({ scope, state: guardrail.effectiveState(scope) })),
            bands: (scope) => guardrail.bandsFor(scope),
            now,
          }),
        async (app) => app.register(billingRoutes, { ...billing, now, onError, ...(billingAlerts ? { onJobAlerts: (e) => void billingAlerts.deliver(e) } : {}) }),
        async (app) => app.register(agentRoutes, { agents }),
        async (app) => app.register(evalRoutes, { results: evalResults, store, startRun: (r) => launcher.start(r) }),
        async (app) => app.register(evalPageRoutes),
        async (app) => app.register(incidentRoutes, { incidents }),
        async (app) => app.register(alertRoutes, { ...(alerts ? { alerts } : {}) }),
        async (app) => app.register(anomalyRoutes, { baseline, unitCapOf: (scope) => guardrail.bandsFor(scope).unitCap, audit, llmPrices: pricing.llm, ...(alerts ? { alerts } : {}), now }),
        // The built-in billing page at `/billing`: usage, cost and price by model, agent and day, invoices.
        async (app) => app.register(billingPageRoutes),
        ...(opts.plugins ?? []),
      ],
    });

    const timers = [
      setInterval(() => void guardrail.expireReservations().catch((e: unknown) => onError(e, 'reservation expiry')), 1000),
      // Changes the bus could not take (Redis away) are published again once it answers.
      setInterval(() => void guardrail.republish().catch(() => undefined), 1000),
      setInterval(() => void rollup().catch((e: unknown) => onError(e, 'hourly recompute')), config.FORGE_ROLLUP_INTERVAL_MS),
      setInterval(() => void guardrail.persistLearned().catch((e: unknown) => onError(e, 'learned estimates')), 60_000),
      setInterval(() => void intake.coolDown().catch((e: unknown) => onError(e, 'intake cool-down')), 1000),
    ];
    for (const t of timers) t.unref();
    closers.push({ what: 'timers', close: () => timers.forEach((t) => clearInterval(t)) });
    closers.push({ what: 'learned estimates', close: () => guardrail.persistLearned() });
    // Last opened, first closed: stops intake, in-flight requests finish; then the eval runs end (their cost
    // events go through this app's collector over loopback, so they are aborted before the app closes).
    closers.push({ what: 'http', close: () => app.close() });
    closers.push({ what: 'eval runs', close: () => launcher.close() });

    const address = await app.listen({ host: config.FORGE_HOST, port: config.FORGE_PORT });
    // A component page of an earlier life is about a process that is gone: this one opened the store,
    // rebuilt from it and listens, so it is resolved (a failure that recurs pages again under the same key).
    // With Redis, other processes may still be failing under the same key: their pages are kept.
    if (alerts && !config.FORGE_REDIS_URL) for (const component of new Set(earlierComponentPages)) await alerts.resolveAlert({ kind: 'component_failure', component });
    // In the background, once listening: a snapshot's figures are checked by a full recompute of the log up to
    // the loaded watermark; where they differ the live state is re-based on the log (the recompute is the
    // authority). Then a fresh snapshot, so the next start reads only what comes after it.
    background.check = (async () => {
      if (loaded.origin === 'snapshot' && (await snapshots.verify()).differing.length > 0) await recompute(guardrail, store, now(), publishTotals);
      await snapshots.take();
    })().catch((e: unknown) => onError(e, 'control snapshot (store)'));
    background.baseline = (async () => {
      baseline.learnHistory(await store.listEvents({ allTenants: true }, { from: now() - 30 * 86_400_000, to: now() + 60_000 }, { limit: 200_000 }));
    })().catch((e: unknown) => onError(e, 'cost baseline (store)'));
    billing.start({ clock: now });
    let closing: Promise<void> | undefined;
    self.forge = {
      app,
      url: address,
      store,
      guardrail,
      keys,
      config,
      bus,
      intake,
      agents,
      evalResults,
      pricing,
      spendLoaded: loaded,
      controlCheck: background.check,
      rollup,
      close() {
        closing ??= closeAll();
        return closing;
      },
    };
    return self.forge;
  } catch (e) {
    await closeAll();
    throw e;
  }
}

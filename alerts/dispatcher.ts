import { z } from 'zod';
import { COMPONENTS, GUARD_STATES, parseScope, type Component, stateRank, type GuardState, type StateChange } from '../rules/index.ts';
import { systemClock, systemTimers, type Clock, type Timers } from './clock.ts';
import type { AlertsConfig, RouteKey } from './config.ts';
import { DestinationSender, type DeliveryOutcome, type OutboundMessage } from './delivery.ts';
import { ALERTS_ERROR_CODES, AlertsError, AlertsInputError } from './errors.ts';
import { componentFailureView, guardView, hungTaskView, link, type SlackVariant } from './format.ts';
import { stderrLogger, type AlertLogger, type AlertLogRecord, type AlertLogSink } from './log-sink.ts';
import { Redactor } from './secret.ts';
import { anomalyAlertSchema, anomalyView, type AnomalyAlert } from './anomaly.ts';
import { spendAlertSchema, spendView, type SpendAlert } from './spend.ts';
import { keyHealthSchema, keyHealthView, type KeyHealthNotice } from './key-health.ts';
import type { AlertRow } from '../store/index.ts';
import type { AlertHistory } from './store-sink.ts';
import type { AlertView, EventAction, OperationalAlert } from './types.ts';

export interface AlertDispatcherOptions {
  config: AlertsConfig;
  /** Persists delivered / failed / dead-lettered records (the store's alert_log). */
  sink?: AlertLogSink;
  /** pino-style logger; everything passed to it is redacted first. Default: JSON lines on stderr. */
  logger?: AlertLogger;
  clock?: Clock;
  timers?: Timers;
  fetch?: typeof fetch;
  /** Jitter source in [0, 1). */
  random?: () => number;
  /** What was delivered before a restart (the store's alert_log): once-only alerts stay once-only. */
  history?: AlertHistory;
  /** Receives every background failure (sink errors, bad input from a subscriber); never throws back. */
  onError?: (err: unknown) => void;
}

export type DispatchResult =
  | { outcome: 'dispatched'; dedupKeys: string[]; deliveries: DeliveryOutcome[] }
  | { outcome: 'ignored'; reason: 'stale_seq' | 'stopped' | 'nothing_open' }
  | { outcome: 'invalid'; error: AlertsInputError };

export type AckResult =
  | { acknowledged: true; scope: string; actor: string; at: number; dedupKeys: string[] }
  | { acknowledged: false; scope: string; reason: 'nothing_to_acknowledge' | 'already_acknowledged'; by?: string };

/** A record of the alert log (the store's alert_log rows), as adoptLoggedPages reads it. */
export type LoggedAlert = Pick<AlertRow, 'at' | 'scope' | 'dedupKey' | 'severity' | 'outcome' | 'message'> & { details?: unknown };

/** An unacknowledged-or-acknowledged warning of one scope. */
export interface OpenWarning {
  scope: string;
  dedupKey: string;
  condition: string;
  /** False once the scope left WARNING; kept for the day so the same warning does not notify twice. */
  active: boolean;
  notifications: number;
  lastNotifiedAt: number;
  acknowledged?: { actor: string; at: number };
}

interface Incident {
  view: AlertView;
  /** PagerDuty destinations the trigger was routed to. */
  destinations: string[];
  acknowledged: boolean;
}

interface WarningState extends OpenWarning {
  view: AlertView;
}

const DAY_MS = 86_400_000;
const MAX_DEAD_LETTERS = 1000;

const hitSchema = z.object({
  id: z.string().min(1),
  level: z.enum(['WARNING', 'HARD_STOP', 'EMERGENCY_STOP']),
  metric: z.string(),
  unit: z.enum(['usd_micros', 'ratio', 'count']),
  value: z.number().finite(),
  threshold: z.number().finite(),
  topComponent: z.enum(COMPONENTS as [Component, ...Component[]]),
});
const stateChangeSchema = z.object({
  scope: z.string().refine((s) => parseScope(s) !== undefined, 'not a scope key (global, tenant:<id>, run:<tenant>/<run>)'),
  state: z.enum(GUARD_STATES),
  previous: z.enum(GUARD_STATES),
  seq: z.number().int().nonnegative(),
  at: z.number().int().nonnegative(),
  reason: z.string(),
  holds: z.array(hitSchema),
  weekMicros: z.number().int(),
  actor: z.string().optional(),
});
const idPart = z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, 'letters, digits, . _ : - (max 128)');
const operationalSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('hung_task'),
    tenantId: idPart,
    runId: idPart,
    taskId: idPart,
    silentForMs: z.number().finite().nonnegative(),
    at: z.number().int().nonnegative().optional(),
  }),
  z.object({
    kind: z.literal('component_failure'),
    component: z.enum(['collector', 'api', 'store']),
    error: z.union([z.string(), z.instanceof(Error)]),
    at: z.number().int().nonnegative().optional(),
  }),
]);

function inputError(e: z.ZodError, prefix: string): AlertsInputError {
  const issue = e.issues[0];
  const path = issue?.path.map(String).join('.') ?? '';
  return new AlertsInputError(path ? `${prefix}.${path}` : prefix, issue?.message ?? 'invalid');
}

/**
 * Sends guardrail state changes and operational alerts to Slack and PagerDuty.
 *
 * - WARNING -> routes.WARNING (Slack), re-notified every `renotify.intervalSeconds` until acknowledged.
 * - HARD_STOP / EMERGENCY_STOP -> routes (PagerDuty trigger + Slack), one page per dedup key.
 * - A drop from a stop (a lift) resolves the scope's open PagerDuty incidents with the same dedup keys.
 * Changes of one scope are handled in order, so a resolve never overtakes its trigger.
 * No method rejects on delivery failure: failures become dead letters, other errors go to `onError`.
 */
export class AlertDispatcher {
  readonly #config: AlertsConfig;
  readonly #clock: Clock;
  readonly #timers: Timers;
  readonly #logger: AlertLogger;
  readonly #sink: AlertLogSink | undefined;
  readonly #history: AlertHistory | undefined;
  readonly #onError: (err: unknown) => void;
  readonly #redactor: Redactor;
  readonly #senders = new Map<string, DestinationSender>();
  readonly #abort = new AbortController();
  readonly #chains = new Map<string, Promise<unknown>>();
  readonly #background = new Set<Promise<unknown>>();
  /** scope -> last seq handled and when (clock ms). */
  readonly #lastSeq = new Map<string, { seq: number; seenAt: number }>();
  readonly #warnings = new Map<string, WarningState>();
  /** scope -> dedup key -> open incident. */
  readonly #incidents = new Map<string, Map<string, Incident>>();
  readonly #deadLetters: AlertLogRecord[] = [];
  #interval: unknown;
  #ticking = false;
  #stopped = false;

  constructor(opts: AlertDispatcherOptions) {
    this.#config = opts.config;
    this.#clock = opts.clock ?? systemClock;
    this.#timers = opts.timers ?? systemTimers;
    this.#logger = opts.logger ?? stderrLogger;
    this.#sink = opts.sink;
    this.#history = opts.history;
    this.#redactor = new Redactor(opts.config.secrets);
    this.#onError =
      opts.onError ??
      ((e: unknown) => this.#log('error', { error: this.#redactor.error(e) }, 'alerts background error'));
    const fetchFn = opts.fetch ?? globalThis.fetch;
    const random = opts.random ?? Math.random;
    for (const dest of opts.config.destinations.values()) {
      this.#senders.set(
        dest.name,
        new DestinationSender(dest, {
          fetch: fetchFn,
          clock: this.#clock,
          redactor: this.#redactor,
          source: opts.config.source,
          random,
          signal: this.#abort.signal,
          record: (rec) => this.#record(rec),
          log: (level, fields, msg) => this.#log(level, fields, msg),
        }),
      );
    }
  }

  /** A subscriber for the halt bus / rules engine: never throws, never leaves a rejected promise. */
  listener(): (change: StateChange) => void {
    return (change) => {
      void this.onStateChange(change);
    };
  }

  /** Handles one guardrail state change. Resolves once its deliveries finished (or were dead-lettered). */
  async onStateChange(change: StateChange): Promise<DispatchResult> {
    try {
      const parsed = stateChangeSchema.safeParse(change);
      if (!parsed.success) {
        const error = inputError(parsed.error, 'stateChange');
        this.#onError(error);
        return { outcome: 'invalid', error };
      }
      if (this.#stopped) return { outcome: 'ignored', reason: 'stopped' };
      return await this.#enqueue(change.scope, () => this.#applyChange(change));
    } catch (e) {
      this.#onError(e);
      return { outcome: 'ignored', reason: 'stopped' };
    }
  }

  /** Raises a hung-task or component-failure alert (routes.hung_task / routes.component_failure). */
  async raise(alert: OperationalAlert): Promise<DispatchResult> {
    const refused = this.#refuse(operationalSchema, alert, 'alert');
    if (refused) return refused;
    const at = alert.at ?? this.#clock.now();
    const view =
      alert.kind === 'hung_task'
        ? hungTaskView({ ...alert, at }, this.#config)
        : componentFailureView({ ...alert, at, errorText: this.#redactor.error(alert.error) }, this.#config);
    return this.#openOnce(view, alert.kind);
  }

  /** Bad input (to onError, as a value) or a stopped dispatcher: the result to return; else undefined. */
  #refuse(schema: z.ZodType, input: unknown, prefix: string): DispatchResult | undefined {
    const parsed = schema.safeParse(input);
    if (!parsed.success) {
      const error = inputError(parsed.error, prefix);
      this.#onError(error);
      return { outcome: 'invalid', error };
    }
    return this.#stopped ? { outcome: 'ignored', reason: 'stopped' } : undefined;
  }

  /** Opens an alert on its route, in the scope's order. */
  #openOnce(view: AlertView, route: RouteKey): Promise<DispatchResult> {
    return this.#enqueue(view.scope, async () => {
      const deliveries = await this.#open(view, route, `${view.dedupKey}|notify`);
      return { outcome: 'dispatched', dedupKeys: [view.dedupKey], deliveries } as const;
    });
  }

  /** A cost anomaly (routes.anomaly): once per scope, anomaly, subject and UTC day. */
  async raiseAnomaly(alert: AnomalyAlert): Promise<DispatchResult> {
    const refused = this.#refuse(anomalyAlertSchema, alert, 'anomaly');
    if (refused) return refused;
    return this.#openOnce(anomalyView({ ...alert, at: alert.at ?? this.#clock.now() }, this.#config), 'anomaly');
  }

  /**
   * An execution spike paused a tenant's intake (routes.intake_paused: paged like a hard stop, PagerDuty +
   * Slack). Once per tenant and UTC day, like every anomaly; the subject is the window's size.
   */
  async raiseIntakePause(alert: Omit<AnomalyAlert, 'anomaly' | 'kind'>): Promise<DispatchResult> {
    const a: AnomalyAlert = { ...alert, kind: 'anomaly', anomaly: 'execution_spike' };
    const refused = this.#refuse(anomalyAlertSchema, a, 'anomaly');
    if (refused) return refused;
    return this.#openOnce(anomalyView({ ...a, at: a.at ?? this.#clock.now() }, this.#config), 'intake_paused');
  }

  /** The tenant's intake was resumed: its open execution-spike pages (opened by this process) are resolved. */
  async resolveIntakePause(tenantId: string): Promise<DispatchResult> {
    const scope = `tenant:${tenantId}`;
    return this.#enqueue(scope, async (): Promise<DispatchResult> => {
      const open = [...(this.#incidents.get(scope)?.values() ?? [])].filter((i) => i.view.condition.startsWith('anomaly:execution_spike:'));
      if (open.length === 0) return { outcome: 'ignored', reason: 'nothing_open' };
      const deliveries = (await Promise.all(open.map((i) => this.#resolveIncident(scope, i)))).flat();
      return { outcome: 'dispatched', dedupKeys: open.map((i) => i.view.dedupKey), deliveries };
    });
  }

  /**
   * Tells a user their spend reached a threshold (routes.user_spend, to the user's email). Once per
   * threshold and period: a destination that already got it, in this process or (with `history`) an
   * earlier one, is skipped. Resolves once delivered or dead-lettered.
   */
  async notifySpend(alert: SpendAlert): Promise<DispatchResult> {
    const refused = this.#refuse(spendAlertSchema, alert, 'spendAlert');
    if (refused) return refused;
    const to = alert.email === undefined ? undefined : typeof alert.email === 'string' ? [alert.email] : alert.email;
    return this.#notifyOnce(spendView(alert, this.#config), 'user_spend', alert.windowStart, to);
  }

  /**
   * A user's provider key is failing (BYOK, reported at settle): routes.key_health, the user's email and the
   * team's Slack. Once per key, status and UTC day, across restarts (with `history`).
   */
  async raiseKeyHealth(alert: KeyHealthNotice): Promise<DispatchResult> {
    const refused = this.#refuse(keyHealthSchema, alert, 'keyHealth');
    if (refused) return refused;
    const to = alert.email === undefined ? undefined : typeof alert.email === 'string' ? [alert.email] : alert.email;
    return this.#notifyOnce(keyHealthView(alert, this.#config), 'key_health', Math.floor(alert.at / DAY_MS) * DAY_MS, to);
  }

  /**
   * Notifies a route's destinations once per dedup key: one that already got it, in this process or (with
   * `history`) an earlier one since `since`, is skipped. `to` names email recipients (else the destination's).
   */
  #notifyOnce(view: AlertView, route: RouteKey, since: number, to?: readonly string[]): Promise<DispatchResult> {
    return this.#enqueue(view.scope, async () => {
      const key = `${view.dedupKey}|notify`;
      const deliveries = await Promise.all(
        this.#notifiers(route).map(async (s): Promise<DeliveryOutcome> => {
          if (!s.has(key) && (await this.#deliveredBefore(view, s, since))) return { status: 'duplicate', destination: s.name };
          return s.send(this.#note(view, { type: 'new' }, key, 'notify', s.type === 'email' ? to : undefined));
        }),
      );
      return { outcome: 'dispatched', dedupKeys: [view.dedupKey], deliveries } as const;
    });
  }

  async #deliveredBefore(view: AlertView, s: DestinationSender, since: number): Promise<boolean> {
    if (!this.#history) return false;
    try {
      return await this.#history.delivered({ scope: view.scope, dedupKey: view.dedupKey, channel: `${s.type}:${s.name}`, since, now: this.#clock.now() });
    } catch (e) {
      // Unknown history: sending twice beats never telling the user.
      this.#onError(e);
      return false;
    }
  }

  /** Resolves an operational alert raised today (task finished, component recovered). */
  async resolveAlert(
    alert: { kind: 'hung_task'; tenantId: string; runId: string; taskId: string } | { kind: 'component_failure'; component: string },
  ): Promise<DispatchResult> {
    const scope = alert.kind === 'hung_task' ? `run:${alert.tenantId}/${alert.runId}` : 'global';
    const condition = alert.kind === 'hung_task' ? `hung_task:${alert.taskId}` : `component_failure:${alert.component}`;
    return this.#enqueue(scope, async (): Promise<DispatchResult> => {
      const incs = this.#incidents.get(scope);
      const open = [...(incs?.values() ?? [])].filter((i) => i.view.condition === condition);
      if (open.length === 0) return { outcome: 'ignored', reason: 'nothing_open' };
      const deliveries = (await Promise.all(open.map((i) => this.#resolveIncident(scope, i)))).flat();
      return { outcome: 'dispatched', dedupKeys: open.map((i) => i.view.dedupKey), deliveries };
    });
  }

  /**
   * Acknowledges the scope's open warning (stops its re-notifications) and its open pages
   * (PagerDuty `acknowledge`). The caller (the API) authenticates and audits; this is the hook.
   * Notifications of the acknowledgement go out in the background (see whenIdle).
   */
  acknowledge(scope: string, actor: string): Promise<AckResult> {
    if (parseScope(scope) === undefined) return Promise.reject(new AlertsInputError('scope', 'not a scope key'));
    if (typeof actor !== 'string' || actor.trim() === '' || actor.length > 200) {
      return Promise.reject(new AlertsInputError('actor', 'must be a non-empty string of at most 200 characters'));
    }
    const now = this.#clock.now();
    const w = this.#warnings.get(scope);
    const incs = [...(this.#incidents.get(scope)?.values() ?? [])].filter((i) => !i.acknowledged);
    const warningOpen = w !== undefined && w.active && w.acknowledged === undefined;
    if (!warningOpen && incs.length === 0) {
      if (w?.active && w.acknowledged) {
        return Promise.resolve({ acknowledged: false, scope, reason: 'already_acknowledged', by: w.acknowledged.actor });
      }
      return Promise.resolve({ acknowledged: false, scope, reason: 'nothing_to_acknowledge' });
    }
    const dedupKeys: string[] = [];
    if (warningOpen) {
      w.acknowledged = { actor, at: now };
      dedupKeys.push(w.dedupKey);
    }
    for (const i of incs) {
      i.acknowledged = true;
      if (!dedupKeys.includes(i.view.dedupKey)) dedupKeys.push(i.view.dedupKey);
    }
    this.#log('info', { scope, actor, dedupKeys }, 'alert acknowledged');
    const sends = this.#enqueue(scope, async () => {
      const out: Promise<DeliveryOutcome>[] = [];
      if (warningOpen) {
        for (const s of this.#notifiers('WARNING')) {
          out.push(s.send(this.#note(w.view, { type: 'acknowledged', actor }, `${w.dedupKey}|ack`, 'notify')));
        }
      }
      for (const i of incs) {
        for (const s of this.#named(i.destinations)) {
          out.push(s.send(this.#pd(i.view, 'acknowledge')));
        }
      }
      return Promise.all(out);
    });
    this.#track(sends);
    return Promise.resolve({ acknowledged: true, scope, actor, at: now, dedupKeys });
  }

  /** Sends reminders for unacknowledged warnings that are due. The loop started by start() calls it. */
  async tick(): Promise<void> {
    const now = this.#clock.now();
    const due = [...this.#warnings.values()].filter(
      (w) => w.active && !w.acknowledged && now - w.lastNotifiedAt >= this.#config.renotifyIntervalMs,
    );
    const runs = due.map((w) => {
      w.lastNotifiedAt = now;
      w.notifications += 1;
      const n = w.notifications;
      return this.#enqueue(w.scope, async () => {
        // An acknowledgement or a state change may have landed while this waited its turn.
        if (!w.active || w.acknowledged || this.#warnings.get(w.scope) !== w) return [];
        return Promise.all(
          this.#notifiers('WARNING').map((s) =>
            s.send(this.#note(w.view, { type: 'reminder', n }, `${w.dedupKey}|notify|r${n}`, 'notify')),
          ),
        );
      });
    });
    await Promise.all(runs);
    // Bounded memory: idempotency keys outlive their UTC day by a margin; closed warnings and operational
    // pages (hung task, component failure) older than that are dropped (PagerDuty keeps its own incidents).
    for (const s of this.#senders.values()) s.prune(now - 3 * DAY_MS);
    for (const [scope, w] of this.#warnings) if (!w.active && now - w.lastNotifiedAt > 2 * DAY_MS) this.#warnings.delete(scope);
    for (const [scope, m] of this.#incidents) {
      for (const [k, inc] of m) if (inc.view.kind !== 'guard' && now - inc.view.at > 2 * DAY_MS) m.delete(k);
      if (m.size === 0) this.#incidents.delete(scope);
    }
    for (const [scope, l] of this.#lastSeq) {
      if (now - l.seenAt > 7 * DAY_MS && !this.#warnings.has(scope) && !this.#incidents.has(scope)) this.#lastSeq.delete(scope);
    }
  }

  /** Starts the re-notify loop. */
  start(): void {
    if (this.#interval !== undefined || this.#stopped) return;
    this.#interval = this.#timers.setInterval(() => {
      if (this.#ticking) return;
      this.#ticking = true;
      this.tick()
        .catch((e: unknown) => this.#onError(e))
        .finally(() => {
          this.#ticking = false;
        });
    }, this.#config.renotifyCheckMs);
  }

  /** Stops the loop, aborts waiting retries (they become dead letters) and waits for in-flight work. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#interval !== undefined) this.#timers.clearInterval(this.#interval);
    this.#interval = undefined;
    this.#abort.abort(new AlertsError(ALERTS_ERROR_CODES.delivery, 'alert dispatcher stopped'));
    await this.whenIdle();
    for (const s of this.#senders.values()) s.close();
  }

  /** Resolves when no delivery is queued or in flight. */
  async whenIdle(): Promise<void> {
    while (this.#chains.size > 0 || this.#background.size > 0) {
      await Promise.allSettled([...this.#chains.values(), ...this.#background]);
    }
  }

  /** Warnings of the day, acknowledged or not (copies). */
  openWarnings(): OpenWarning[] {
    return [...this.#warnings.values()].map(({ view: _view, ...w }) => ({ ...w }));
  }

  /**
   * Takes over the pages an earlier life of Forge (or another process) opened for stops that still hold,
   * so that the lift resolves them: replays the scopes' audited guard changes (transitions, acknowledgements,
   * lifts; any order) through the same bookkeeping as a live change, sending nothing. A scope this
   * dispatcher has already seen a newer change of is left as it is.
   */
  adoptOpenPages(changes: readonly StateChange[]): void {
    const byScope = new Map<string, StateChange[]>();
    for (const c of changes) {
      const list = byScope.get(c.scope);
      if (list) list.push(c);
      else byScope.set(c.scope, [c]);
    }
    for (const [scope, list] of byScope) {
      list.sort((a, b) => a.seq - b.seq);
      const newest = list[list.length - 1]!;
      const seen = this.#lastSeq.get(scope);
      if (seen !== undefined && seen.seq >= newest.seq) continue;
      const pages = new Map<string, Incident>(this.#incidents.get(scope));
      for (const change of list) {
        for (const [key, inc] of pages) if (inc.view.kind === 'guard' && inc.view.state && stateRank(change.state) < stateRank(inc.view.state)) pages.delete(key);
        if (change.kind === 'acknowledgement') for (const inc of pages.values()) inc.acknowledged = true;
        if ((change.kind ?? 'transition') === 'transition' && (change.state === 'HARD_STOP' || change.state === 'EMERGENCY_STOP')) {
          const pd = this.#pagers(change.state);
          const view = guardView(change, this.#config);
          if (pd.length > 0 && !pages.has(view.dedupKey)) pages.set(view.dedupKey, { view, destinations: pd.map((d) => d.name), acknowledged: false });
        }
      }
      if (pages.size > 0) this.#incidents.set(scope, pages);
      else this.#incidents.delete(scope);
      this.#lastSeq.set(scope, { seq: newest.seq, seenAt: this.#clock.now() });
    }
  }

  /**
   * Takes over the operational pages an earlier life of Forge opened and did not resolve (a hung task, a
   * failing component, an execution spike's intake pause), from the alert log (oldest first; what each
   * destination took), sending nothing: the later resolution (the task's end, the resume, a recovery)
   * resolves them under the keys they were opened with, and a repeated report is not sent again. A trigger
   * whose delivery was cut short (the process stopped mid-attempt, attempts ran out) may still have reached
   * PagerDuty: its page is taken over too (resolving an incident PagerDuty never opened is harmless), but
   * not counted as sent, so a repeated report triggers it again. Pages older than two days are not taken
   * over (tick() drops such pages too). A page this dispatcher already holds is left as it is.
   */
  adoptLoggedPages(rows: readonly LoggedAlert[]): void {
    const since = this.loggedPagesWindow().from;
    const pages = new Map<string, Incident>();
    for (const r of [...rows].sort((a, b) => a.at - b.at)) {
      const d = (r.details ?? {}) as { kind?: string; condition?: string; eventAction?: string; destination?: string };
      const condition = d.condition ?? '';
      const kind = d.kind === 'hung_task' || d.kind === 'component_failure' || (d.kind === 'anomaly' && condition.startsWith('anomaly:execution_spike:')) ? d.kind : undefined;
      const s = d.destination === undefined ? undefined : this.#senders.get(d.destination);
      // A rate-limited alert never left.
      if (kind === undefined || !s || r.outcome === 'rate_limited' || r.at < since || this.#incidents.get(r.scope)?.has(r.dedupKey)) continue;
      const delivered = r.outcome === 'delivered';
      if (!s.pages) {
        if (delivered) s.remember(`${r.dedupKey}|notify`, r.at);
        continue;
      }
      const key = `${r.scope}\n${r.dedupKey}`;
      let page = pages.get(key);
      if (d.eventAction === 'trigger') {
        const view: AlertView = { kind, scope: r.scope, condition, severity: r.severity as AlertView['severity'], dedupKey: r.dedupKey, at: r.at, title: r.message, summary: r.message, facts: [], details: {}, links: { dashboard: link(this.#config.links.dashboardUrl, r.scope), acknowledge: link(this.#config.links.acknowledgeUrl, r.scope) } };
        if (!page) pages.set(key, (page = { view, destinations: [], acknowledged: false }));
        if (!page.destinations.includes(s.name)) page.destinations.push(s.name);
        if (delivered) s.remember(`${r.dedupKey}|trigger`, r.at);
      } else if (page && delivered && d.eventAction === 'acknowledge') {
        page.acknowledged = true;
        s.remember(`${r.dedupKey}|acknowledge`, r.at);
      } else if (page && delivered && d.eventAction === 'resolve') {
        page.destinations = page.destinations.filter((n) => n !== s.name);
        s.forget(`${r.dedupKey}|trigger`);
        s.forget(`${r.dedupKey}|acknowledge`);
      }
    }
    for (const page of pages.values()) {
      if (page.destinations.length === 0) continue;
      let m = this.#incidents.get(page.view.scope);
      if (!m) this.#incidents.set(page.view.scope, (m = new Map()));
      m.set(page.view.dedupKey, page);
    }
  }

  /** The span of the alert log adoptLoggedPages takes pages from: epoch ms on this dispatcher's clock, which stamps the log. */
  loggedPagesWindow(): { from: number; to: number } {
    const now = this.#clock.now();
    return { from: now - 2 * DAY_MS, to: now + 60_000 };
  }

  /**
   * Tasks whose final cost events were accepted: their hung-task pages (the task ended, its kill is
   * done) are resolved. A map lookup per task; nothing is queued for a task without an open page.
   */
  tasksEnded(tasks: Iterable<{ tenantId: string; runId?: string | undefined; taskId: string }>): void {
    // Called with every ingested batch: nothing to look up while no page is open (the usual case).
    if (this.#incidents.size === 0) return;
    for (const t of tasks) {
      if (t.runId === undefined) continue;
      const open = this.#incidents.get(`run:${t.tenantId}/${t.runId}`);
      if (!open || ![...open.values()].some((i) => i.view.condition === `hung_task:${t.taskId}`)) continue;
      this.#track(this.resolveAlert({ kind: 'hung_task', tenantId: t.tenantId, runId: t.runId, taskId: t.taskId }));
    }
  }

  /** Open incidents (pages) per scope: dedup keys. */
  openIncidents(): Array<{ scope: string; dedupKey: string; condition: string; acknowledged: boolean }> {
    return [...this.#incidents].flatMap(([scope, m]) =>
      [...m.values()].map((i) => ({ scope, dedupKey: i.view.dedupKey, condition: i.view.condition, acknowledged: i.acknowledged })),
    );
  }

  /** Recent dead letters (newest last), also appended to the sink. */
  deadLetters(): readonly AlertLogRecord[] {
    return [...this.#deadLetters];
  }

  /** Destinations by name and type; never their URLs or keys. */
  describe(): { destinations: Array<{ name: string; type: string }>; routes: Readonly<Record<RouteKey, readonly string[]>> } {
    return {
      destinations: [...this.#senders.values()].map((s) => ({ name: s.name, type: s.type })),
      routes: this.#config.routes,
    };
  }

  toJSON(): unknown {
    return this.describe();
  }

  // ------------------------------------------------------------------ internals

  async #applyChange(change: StateChange): Promise<DispatchResult> {
    const last = this.#lastSeq.get(change.scope);
    if (last !== undefined && change.seq <= last.seq) return { outcome: 'ignored', reason: 'stale_seq' };
    this.#lastSeq.set(change.scope, { seq: change.seq, seenAt: this.#clock.now() });

    const view = guardView(change, this.#config);
    const { scope, state, previous } = change;
    const jobs: Promise<DeliveryOutcome[]>[] = [];
    const dedupKeys: string[] = [];

    // Resolve pages whose level the scope has dropped below (a lift, or a partial one).
    const incs = this.#incidents.get(scope);
    if (incs) {
      for (const inc of [...incs.values()]) {
        if (inc.view.kind === 'guard' && inc.view.state && stateRank(state) < stateRank(inc.view.state)) {
          dedupKeys.push(inc.view.dedupKey);
          jobs.push(this.#resolveIncident(scope, inc));
        }
      }
    }
    if (stateRank(state) < stateRank(previous) && stateRank(previous) >= stateRank('HARD_STOP')) {
      const variant: SlackVariant = change.actor ? { type: 'lifted', actor: change.actor, state } : { type: 'lifted', state };
      jobs.push(
        Promise.all(
          this.#notifiers(previous).map((s) => s.send(this.#note(view, variant, `${view.dedupKey}|lifted|${change.seq}`, 'notify'))),
        ),
      );
    }

    const w = this.#warnings.get(scope);
    if (state !== 'WARNING' && w) w.active = false;

    if (state === 'WARNING' && change.actor !== undefined) {
      // An operator action landed the scope in WARNING (a lift leaves the soft conditions holding): the
      // operator has seen it, so it counts as acknowledged; the lift note above already told Slack.
      this.#warnings.set(scope, {
        scope,
        dedupKey: view.dedupKey,
        condition: view.condition,
        active: true,
        notifications: 0,
        lastNotifiedAt: this.#clock.now(),
        acknowledged: w?.acknowledged ?? { actor: change.actor, at: this.#clock.now() },
        view,
      });
    } else if (state === 'WARNING') {
      if (w && w.dedupKey === view.dedupKey) {
        // Same warning again today: no new notification; an unacknowledged one keeps its reminders.
        w.active = true;
        w.view = view;
      } else {
        this.#warnings.set(scope, {
          scope,
          dedupKey: view.dedupKey,
          condition: view.condition,
          active: true,
          notifications: 1,
          lastNotifiedAt: this.#clock.now(),
          view,
        });
        dedupKeys.push(view.dedupKey);
        jobs.push(this.#open(view, 'WARNING', `${view.dedupKey}|notify|s${change.seq}`));
      }
    } else if (state === 'HARD_STOP' || state === 'EMERGENCY_STOP') {
      dedupKeys.push(view.dedupKey);
      jobs.push(this.#open(view, state, `${view.dedupKey}|notify|s${change.seq}`));
    }

    const deliveries = (await Promise.all(jobs)).flat();
    return { outcome: 'dispatched', dedupKeys, deliveries };
  }

  /** Sends a new alert to a route: PagerDuty trigger (recorded as an open incident) and Slack. */
  async #open(view: AlertView, route: RouteKey, slackKey: string): Promise<DeliveryOutcome[]> {
    const pd = this.#pagers(route);
    if (pd.length > 0) {
      let m = this.#incidents.get(view.scope);
      if (!m) this.#incidents.set(view.scope, (m = new Map()));
      const existing = m.get(view.dedupKey);
      const names = new Set([...(existing?.destinations ?? []), ...pd.map((s) => s.name)]);
      m.set(view.dedupKey, { view, destinations: [...names], acknowledged: existing?.acknowledged ?? false });
    }
    const sends = [
      ...pd.map((s) => {
        s.forget(`${view.dedupKey}|resolve`);
        return s.send(this.#pd(view, 'trigger'));
      }),
      ...this.#notifiers(route).map((s) => s.send(this.#note(view, { type: 'new' }, slackKey, 'notify'))),
    ];
    return Promise.all(sends);
  }

  async #resolveIncident(scope: string, inc: Incident): Promise<DeliveryOutcome[]> {
    this.#incidents.get(scope)?.delete(inc.view.dedupKey);
    if (this.#incidents.get(scope)?.size === 0) this.#incidents.delete(scope);
    const out = await Promise.all(
      this.#named(inc.destinations).map((s) => {
        // The incident is over: a new breach with the same key later today pages again.
        s.forget(`${inc.view.dedupKey}|trigger`);
        s.forget(`${inc.view.dedupKey}|acknowledge`);
        return s.send(this.#pd(inc.view, 'resolve'));
      }),
    );
    return out;
  }

  #pd(view: AlertView, action: 'trigger' | 'acknowledge' | 'resolve'): OutboundMessage {
    return { idempotencyKey: `${view.dedupKey}|${action}`, view, eventAction: action, variant: { type: 'new' } };
  }

  #note(view: AlertView, variant: SlackVariant, key: string, action: EventAction, to?: readonly string[]): OutboundMessage {
    return { idempotencyKey: key, view, eventAction: action, variant, ...(to ? { to } : {}) };
  }

  #routed(route: RouteKey | GuardState): DestinationSender[] {
    const names = (this.#config.routes as Record<string, readonly string[] | undefined>)[route] ?? [];
    return this.#named(names);
  }

  /** The route's paging destinations (PagerDuty). */
  #pagers(route: RouteKey | GuardState): DestinationSender[] {
    return this.#routed(route).filter((s) => s.pages);
  }

  /** The route's notifying destinations (Slack, email, webhook). */
  #notifiers(route: RouteKey | GuardState): DestinationSender[] {
    return this.#routed(route).filter((s) => !s.pages);
  }

  #named(names: readonly string[]): DestinationSender[] {
    return names.map((n) => this.#senders.get(n)).filter((s): s is DestinationSender => s !== undefined);
  }

  /** Runs fn after everything queued for the scope; fn's failure goes to onError, never to the chain. */
  #enqueue<T>(scope: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#chains.get(scope) ?? Promise.resolve();
    const next = prev.then(fn);
    const settled = next.catch((e: unknown) => this.#onError(e));
    this.#chains.set(scope, settled);
    void settled.finally(() => {
      if (this.#chains.get(scope) === settled) this.#chains.delete(scope);
    });
    return next;
  }

  #track(p: Promise<unknown>): void {
    const q = p.catch((e: unknown) => this.#onError(e));
    this.#background.add(q);
    void q.finally(() => this.#background.delete(q));
  }

  async #record(rec: AlertLogRecord): Promise<void> {
    if (rec.status === 'dead_letter' || rec.status === 'rate_limited') {
      this.#deadLetters.push(rec);
      if (this.#deadLetters.length > MAX_DEAD_LETTERS) this.#deadLetters.shift();
    }
    if (!this.#sink) return;
    try {
      await this.#sink.append(rec);
    } catch (e) {
      this.#onError(new AlertsError(ALERTS_ERROR_CODES.sink, `alert log append failed: ${this.#redactor.error(e)}`));
    }
  }

  #log(level: 'info' | 'warn' | 'error', fields: Record<string, unknown>, msg: string): void {
    try {
      this.#logger[level](this.#redactor.value(fields), this.#redactor.text(msg));
    } catch {
      // A broken logger must not break delivery.
    }
  }
}

import { tenantScope, type ScopeKey, type StateChange } from '../rules/index.ts';
import type { GuardrailEventRow } from '../store/index.ts';
import { GuardError, type ErrorHandler } from './errors.ts';
import { FifoMap } from './fifo.ts';
import type { AuditRecord, IntakePort } from './guardrail.ts';
import type { HaltBus } from './halt-bus.ts';

/**
 * Execution spikes (F-044): a tenant whose admissions in the last window run at `factor` x its trailing rate
 * has its intake paused (new admissions refused, tasks in flight go on) until an operator resumes it, or a
 * cool-down ends. All durations in ms.
 */
export interface SpikeOptions {
  /** Bucket width (default 60,000). */
  bucketMs?: number;
  /** The window compared (default 5 minutes). */
  windowMs?: number;
  /** The trailing period before the window whose rate is the normal one (default 1 hour). */
  trailingMs?: number;
  /** Spike at window rate >= factor x trailing rate (default 5). */
  factor?: number;
  /** Admissions the window must hold at least (default 50): a handful of tasks is never a spike. */
  minCount?: number;
  /** Admissions the trailing period must hold at least (default 10): a quiet tenant's first burst has no rate to exceed. */
  minTrailing?: number;
  /** How long this process must have watched the tenant before the window (default 30 minutes). */
  minHistoryMs?: number;
  /** Tenants counted at most (oldest dropped; default 100,000): memory bounded by configuration. */
  maxTenants?: number;
}

/** A spike: the window's admissions against the trailing period's, scaled to the window. */
export interface Spike {
  tenantId: string;
  windowCount: number;
  trailingCount: number;
  /** What the trailing rate expects in one window, rounded down. */
  expected: number;
  factor: number;
  windowMs: number;
  /** The span the trailing count covers, ms (less than trailingMs while history is shorter). */
  trailingSpanMs: number;
  at: number;
}

interface Counts {
  /** Absolute bucket number (floor(t / bucketMs)) of the newest bucket. */
  last: number;
  /** First bucket this process saw the tenant in. */
  first: number;
  /** Ring of bucket counts, indexed by absolute bucket mod length. */
  ring: Uint32Array;
  windowSum: number;
  trailingSum: number;
}

/**
 * Admissions per tenant in short buckets (a ring per tenant): each `note` is O(1), and so is the spike test
 * (the sums are kept; a bucket roll re-sums the ring once per bucket, not per admission). Counts are this
 * process's own: with several API processes each compares its share of a tenant's admissions with its
 * share of the trailing rate, which is the same ratio when a load balancer spreads them.
 */
export class ExecutionRate {
  readonly #bucketMs: number;
  readonly #windowBuckets: number;
  readonly #trailingBuckets: number;
  readonly #factor: number;
  readonly #minCount: number;
  readonly #minTrailing: number;
  readonly #minHistoryBuckets: number;
  readonly #maxTenants: number;
  readonly #tenants = new FifoMap<string, Counts>();

  constructor(o: SpikeOptions = {}) {
    this.#bucketMs = o.bucketMs ?? 60_000;
    const buckets = (ms: number, name: string): number => {
      const n = ms / this.#bucketMs;
      if (!Number.isInteger(n) || n < 1) throw new GuardError('FORGE_ERR_VALIDATION', `${name} must be a whole number (>= 1) of buckets of ${this.#bucketMs} ms`, { field: name });
      return n;
    };
    this.#windowBuckets = buckets(o.windowMs ?? 5 * 60_000, 'windowMs');
    this.#trailingBuckets = buckets(o.trailingMs ?? 60 * 60_000, 'trailingMs');
    this.#minHistoryBuckets = Math.ceil((o.minHistoryMs ?? 30 * 60_000) / this.#bucketMs);
    this.#factor = o.factor ?? 5;
    this.#minCount = o.minCount ?? 50;
    this.#minTrailing = o.minTrailing ?? 10;
    this.#maxTenants = o.maxTenants ?? 100_000;
  }

  /** Counts one admission of the tenant at `now`; returns the spike when the window now is one. */
  note(tenantId: string, now: number): Spike | undefined {
    const b = Math.floor(now / this.#bucketMs);
    let c = this.#tenants.get(tenantId);
    if (!c) {
      this.#tenants.evict(0, this.#maxTenants - 1);
      c = { last: b, first: b, ring: new Uint32Array(this.#windowBuckets + this.#trailingBuckets), windowSum: 0, trailingSum: 0 };
      this.#tenants.set(tenantId, c);
    }
    // An admission stamped a little in the past (clock skew between processes) counts in the newest bucket.
    if (b > c.last) this.#roll(c, b);
    c.ring[c.last % c.ring.length]! += 1;
    c.windowSum += 1;
    return this.#spike(tenantId, c, now);
  }

  /** Forgets a tenant's counts (after a pause or a resume: the burst that paused it is not counted again). */
  reset(tenantId: string): void {
    this.#tenants.delete(tenantId);
  }

  #roll(c: Counts, b: number): void {
    const n = c.ring.length;
    if (b - c.last >= n) c.ring.fill(0);
    else for (let x = c.last + 1; x <= b; x++) c.ring[x % n] = 0;
    c.last = b;
    let w = 0;
    let t = 0;
    for (let x = b - n + 1; x <= b; x++) {
      if (x < 0) continue;
      const v = c.ring[x % n]!;
      if (x > b - this.#windowBuckets) w += v;
      else t += v;
    }
    c.windowSum = w;
    c.trailingSum = t;
  }

  #spike(tenantId: string, c: Counts, now: number): Spike | undefined {
    if (c.windowSum < this.#minCount || c.trailingSum < this.#minTrailing) return undefined;
    const windowStart = c.last - this.#windowBuckets + 1;
    const watched = windowStart - c.first;
    if (watched < this.#minHistoryBuckets) return undefined;
    // The trailing period as far as this process has watched it: a restart's short history is a short span, not a low rate.
    const spanBuckets = Math.min(this.#trailingBuckets, watched);
    // window / windowBuckets >= factor * trailing / spanBuckets, in integers.
    if (c.windowSum * spanBuckets < this.#factor * c.trailingSum * this.#windowBuckets) return undefined;
    return {
      tenantId,
      windowCount: c.windowSum,
      trailingCount: c.trailingSum,
      expected: Math.floor((c.trailingSum * this.#windowBuckets) / spanBuckets),
      factor: this.#factor,
      windowMs: this.#windowBuckets * this.#bucketMs,
      trailingSpanMs: spanBuckets * this.#bucketMs,
      at: now,
    };
  }
}

/** How a spike is told (audit row, alert): its subject, the window's count against factor x expected, a sentence. */
export function spikeSummary(s: Spike): { subject: string; value: number; threshold: number; detail: string } {
  return {
    subject: `window:${s.windowMs / 60_000}m`,
    value: s.windowCount,
    threshold: s.expected * s.factor,
    detail: `${s.windowCount} admissions in ${s.windowMs / 60_000} min against ${s.expected} expected from the trailing rate (${s.trailingCount} in ${s.trailingSpanMs / 60_000} min; factor ${s.factor})`,
  };
}

/** A tenant's intake, as every process sees it. */
export interface IntakeStatus {
  tenantId: string;
  paused: boolean;
  /** Epoch ms of the last pause or resume. */
  since: number;
  /** Monotonic per tenant: the newer pause or resume wins across processes and restarts. */
  seq: number;
  actor: string;
  reason: string;
}

export interface IntakeGateDeps {
  /**
   * The intake's own halt bus (in-process, or Redis under its own key prefix): a pause is a HARD_STOP of
   * the tenant scope on it and a resume a NORMAL, stored compare-and-set by seq and pushed to every process.
   * It is not the guardrail's bus: runners read that one, and a paused intake refuses at the API instead.
   */
  bus: Pick<HaltBus, 'publish' | 'subscribe' | 'current' | 'scopes'>;
  audit: (r: AuditRecord) => Promise<void>;
  now: () => number;
  onError: ErrorHandler;
  /** Spike detection; absent: intake is paused by nobody (resume still works on an earlier pause). */
  spike?: SpikeOptions;
  /** Automatic pauses end by themselves after this long (ms); 0 or absent: only an operator resumes. */
  coolDownMs?: number;
  /** A spike paused a tenant (called once, in the process whose pause the bus took). Must not throw. */
  onPause?: (spike: Spike) => void;
  /** A tenant's intake was resumed, here or in another process (every process: each closes what it opened). Must not throw. */
  onResume?: (status: IntakeStatus) => void;
}

/** guardrail_events kinds of the intake's control state. */
export const INTAKE_KINDS = ['intake_pause', 'intake_resume'] as const;

const tenantOf = (scope: ScopeKey): string | undefined => (scope.startsWith('tenant:') ? scope.slice(7) : undefined);

/**
 * The tenant intake gate: the admission path asks `paused(tenant)` (a map read) and tells `admitted(tenant)`;
 * a spike pauses the tenant. Each pause and resume is published on the intake bus (compare-and-set by seq:
 * of two processes pausing at once one wins, the other adopts it) and audited in guardrail_events, from
 * which, with the bus's durable copy, a restart rebuilds the same pauses (`rebuild`).
 */
export class IntakeGate implements IntakePort {
  readonly #d: IntakeGateDeps;
  readonly #status = new Map<string, IntakeStatus>();
  readonly #rate: ExecutionRate | undefined;
  readonly #pausing = new Set<string>();
  #unsubscribe: (() => void) | undefined;
  #pending: Promise<unknown> = Promise.resolve();

  constructor(d: IntakeGateDeps) {
    this.#d = d;
    this.#rate = d.spike ? new ExecutionRate(d.spike) : undefined;
    this.#unsubscribe = d.bus.subscribe((c) => this.#adopt(c));
  }

  close(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
  }

  /** The pause in force for the tenant, if any (O(1): the admission path's check). */
  paused(tenantId: string): IntakeStatus | undefined {
    const s = this.#status.get(tenantId);
    return s?.paused ? s : undefined;
  }

  status(tenantId: string): IntakeStatus {
    return this.#status.get(tenantId) ?? { tenantId, paused: false, since: 0, seq: 0, actor: '', reason: '' };
  }

  /** Counts an admitted task; a spike pauses the tenant (in the background: this admission stands). */
  admitted(tenantId: string): void {
    const spike = this.#rate?.note(tenantId, this.#d.now());
    if (!spike || this.paused(tenantId) || this.#pausing.has(tenantId)) return;
    this.#pausing.add(tenantId);
    this.#track(
      this.#pauseForSpike(spike).finally(() => this.#pausing.delete(tenantId)),
      'intake pause',
    );
  }

  async #pauseForSpike(spike: Spike): Promise<void> {
    const told = spikeSummary(spike);
    const reason = `execution spike: ${told.detail}`;
    const details = { spike: { window_count: spike.windowCount, trailing_count: spike.trailingCount, expected: spike.expected, factor: spike.factor, window_ms: spike.windowMs, trailing_span_ms: spike.trailingSpanMs } };
    const out = await this.#change(spike.tenantId, true, 'forge', reason, details);
    if (out === 'published') {
      // The anomaly itself, beside the control state (intake_pause): audited like every cost anomaly.
      const seq = this.status(spike.tenantId).seq;
      await this.#d.audit({
        kind: 'anomaly',
        scope: tenantScope(spike.tenantId),
        at: spike.at,
        actor: 'forge',
        reason: `execution_spike: ${told.detail}; intake paused`,
        details: { anomaly: 'execution_spike', subject: told.subject, value: told.value, threshold: told.threshold, unit: 'count', intake_seq: seq, ...details },
        eventId: `anomaly:execution_spike:${spike.tenantId}:${seq}`,
      });
      try {
        this.#d.onPause?.(spike);
      } catch (e) {
        this.#d.onError(e, 'intake pause listener');
      }
    }
  }

  /** An operator resumes a paused tenant's intake; FORGE_ERR_CONFLICT when it is not paused. */
  async resume(tenantId: string, actor: string, reason: string): Promise<IntakeStatus> {
    if (!this.paused(tenantId)) throw new GuardError('FORGE_ERR_CONFLICT', `the intake of tenant "${tenantId}" is not paused: nothing to resume`, { field: 'tenant' });
    await this.#change(tenantId, false, actor, reason, {});
    return this.status(tenantId);
  }

  /** Resumes automatic pauses whose cool-down has passed (a timer calls it; only one process's resume wins). */
  async coolDown(): Promise<number> {
    const ms = this.#d.coolDownMs ?? 0;
    if (ms <= 0) return 0;
    const now = this.#d.now();
    const due = [...this.#status.values()].filter((s) => s.paused && s.actor === 'forge' && now - s.since >= ms);
    for (const s of due) await this.#change(s.tenantId, false, 'forge', `cool-down of ${Math.round(ms / 1000)} s after the pause ended`, {});
    return due.length;
  }

  /**
   * Publishes a pause or resume on top of the newest state: set here at once (this process refuses at
   * once), taken by the bus compare-and-set, then audited. A lost race adopts the winner's state, and the
   * change is made again only if the winner's state is not already what was asked.
   */
  async #change(tenantId: string, paused: boolean, actor: string, reason: string, details: Record<string, unknown>): Promise<'published' | 'stale' | 'failed'> {
    const scope = tenantScope(tenantId);
    for (let attempt = 0; ; attempt++) {
      const cur = this.status(tenantId);
      if (attempt > 0 && cur.paused === paused) return 'stale';
      const at = this.#d.now();
      const next: IntakeStatus = { tenantId, paused, since: at, seq: cur.seq + 1, actor, reason };
      this.#set(next);
      const change: StateChange = { scope, state: paused ? 'HARD_STOP' : 'NORMAL', previous: cur.paused ? 'HARD_STOP' : 'NORMAL', seq: next.seq, at, reason, holds: [], weekMicros: 0, actor, kind: paused ? 'transition' : 'lift' };
      let out: 'published' | 'stale';
      try {
        out = await this.#d.bus.publish(change);
      } catch (e) {
        // The bus is unreachable: this process holds the change, the log keeps it for a restart.
        this.#d.onError(e, `intake ${paused ? 'pause' : 'resume'} of ${tenantId}: not published`);
        await this.#audit(next, details);
        return 'failed';
      }
      if (out === 'published') {
        await this.#audit(next, details);
        return 'published';
      }
      const newer = await this.#d.bus.current(scope);
      if (newer) this.#adopt(newer);
      if (attempt >= 4) return 'stale';
    }
  }

  #audit(s: IntakeStatus, details: Record<string, unknown>): Promise<void> {
    return this.#d.audit({
      kind: s.paused ? 'intake_pause' : 'intake_resume',
      scope: tenantScope(s.tenantId),
      at: s.since,
      actor: s.actor,
      reason: s.reason,
      state: s.paused ? 'HARD_STOP' : 'NORMAL',
      seq: s.seq,
      details: { intake: s.paused ? 'paused' : 'open', ...details },
      eventId: `intake:${s.tenantId}:${s.seq}`,
    });
  }

  /** Another process's (or the bus's durable) pause or resume: newer seqs win. */
  #adopt(c: StateChange): void {
    const tenantId = tenantOf(c.scope);
    if (tenantId === undefined) return;
    const cur = this.#status.get(tenantId);
    if (cur && cur.seq >= c.seq) return;
    this.#set({ tenantId, paused: c.state !== 'NORMAL', since: c.at, seq: c.seq, actor: c.actor ?? 'forge', reason: c.reason });
  }

  #set(s: IntakeStatus): void {
    const was = this.#status.get(s.tenantId);
    this.#status.set(s.tenantId, s);
    // The burst that paused a tenant is not held against it after the resume (nor counted during the pause).
    if (was?.paused !== s.paused) this.#rate?.reset(s.tenantId);
    if (was?.paused === true && !s.paused) {
      try {
        this.#d.onResume?.(s);
      } catch (e) {
        this.#d.onError(e, 'intake resume listener');
      }
    }
  }

  /**
   * Start-up: every tenant's intake from guardrail_events (intake_pause / intake_resume, newest seq wins)
   * and the bus's durable copy where that is newer.
   */
  async rebuild(rows: readonly GuardrailEventRow[]): Promise<number> {
    for (const r of rows) {
      if (!(INTAKE_KINDS as readonly string[]).includes(r.kind)) continue;
      const tenantId = tenantOf(r.scope);
      if (tenantId === undefined) continue;
      const cur = this.#status.get(tenantId);
      if (cur && cur.seq >= r.seq) continue;
      this.#status.set(tenantId, { tenantId, paused: r.kind === 'intake_pause', since: r.at, seq: r.seq, actor: r.actor, reason: r.reason });
    }
    for (const scope of await this.#d.bus.scopes()) {
      const c = await this.#d.bus.current(scope);
      if (c) this.#adopt(c);
    }
    return [...this.#status.values()].filter((s) => s.paused).length;
  }

  /** Resolves once the background pauses started so far are published and audited. */
  async drain(): Promise<void> {
    await this.#pending;
  }

  #track(p: Promise<unknown>, where: string): void {
    const q = p.catch((e: unknown) => this.#d.onError(e, where));
    this.#pending = Promise.all([this.#pending, q]);
  }
}

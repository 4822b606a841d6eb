import { DAY_MS, dayFromLabel } from '../rules/index.ts';
import { addRunDays, parseStreamKey, type RunDayTotals, type Store, type Watermark } from '../store/index.ts';

/** What the snapshots read and write. */
export type SnapshotStore = Pick<Store, 'costWatermark' | 'runDayTotalsSince' | 'costStreamRows' | 'writeControlSnapshot' | 'latestControlSnapshot'>;

/** Where the start-up spend came from: a snapshot plus the log since it, or the whole log (no valid snapshot). */
export type SpendOrigin = 'snapshot' | 'log';

export interface LoadedSpend {
  origin: SpendOrigin;
  /** The snapshot used (origin 'snapshot'). */
  snapshotId?: string;
  /** Groups read from the log: since the snapshot, or all of them. */
  groupsRead: number;
  /** Streams read from their beginning although the snapshot had them (their rows up to its watermark changed). */
  streamsReread: string[];
}

function addCounts(into: Map<string, number>, counts: ReadonlyMap<string, number>): void {
  for (const [t, n] of counts) into.set(t, (into.get(t) ?? 0) + n);
}

/** One group's figures as compared: components, total, counts. */
function figures(g: RunDayTotals): string {
  return JSON.stringify([g.components, g.totalMicros, g.tasks, g.succeeded, g.failed, g.retried]);
}

/**
 * The spend the guard rebuilds at start, kept as snapshots in the store so a start reads the log only since
 * the newest one (issue 20: readiness must not grow with history).
 *
 * It holds the log's totals per (tenant, run, UTC day) over exactly the rows its watermark names (see
 * store/snapshots.ts: per tenant stream, the chain seq, which is insertion order). The guard's spend, the
 * caps' counters and the shared spend's seed all derive from these groups the way they derive from the full
 * scan. `load` is the start-up; `verify` the background check by a full recompute; `take` writes a snapshot
 * (periodically and at a clean shutdown), advancing the held totals by the log since them. One at a time.
 */
export class ControlSnapshots {
  readonly #store: SnapshotStore;
  readonly #log: (line: string) => void;
  /** Exact totals of the rows up to #watermark. */
  #groups = new Map<string, RunDayTotals>();
  #watermark = new Map<string, number>();
  /** Per stream, the rows stored up to #watermark as last counted. */
  #streamRows = new Map<string, number>();
  #origin: SpendOrigin | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(store: SnapshotStore, opts: { log?: (line: string) => void } = {}) {
    this.#store = store;
    this.#log = opts.log ?? (() => {});
  }

  /** Runs one step after the ones before it (load, verify and take never overlap). */
  #serial<T>(step: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(step, step);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** How the start-up spend was loaded; undefined before `load`. */
  get origin(): SpendOrigin | undefined {
    return this.#origin;
  }

  /**
   * Start-up: the newest snapshot that checks out plus the log since its watermark (each event key once, a
   * replay of a key the snapshot holds not at all); without one, the whole log, key by key. Either way no
   * FINAL over the table: what is read is the since-part (and one count of the rows per stream up to the
   * watermark), not the history. A stream whose rows up to the watermark are no longer the ones the snapshot
   * counted (a merge collapsed a copy stored twice, a second writer inserted under the watermark) is read
   * from its beginning instead: its figures in the snapshot may count a key its since-part holds too.
   */
  load(): Promise<LoadedSpend> {
    return this.#serial(async () => {
      const { snapshot, invalid } = await this.#store.latestControlSnapshot();
      for (const i of invalid) this.#log(`forge: control snapshot ${i.id} of ${new Date(i.takenAt).toISOString()} not used: ${i.reason}`);
      const after = new Map(snapshot?.watermark ?? []);
      const rows = new Map(snapshot?.streamRows ?? []);
      const moved: string[] = [];
      if (snapshot) {
        const stored = await this.#store.costStreamRows(snapshot.watermark);
        for (const k of snapshot.watermark.keys()) if ((stored.get(k) ?? 0) !== (snapshot.streamRows.get(k) ?? 0)) moved.push(k);
        // The groups are per tenant, over all its streams: a tenant with a stream moved is read whole again.
        const tenants = new Set(moved.map((k) => parseStreamKey(k).tenantId));
        for (const k of [...after.keys()]) {
          if (!tenants.has(parseStreamKey(k).tenantId)) continue;
          if (!moved.includes(k)) moved.push(k);
          after.delete(k);
          rows.delete(k);
        }
        if (moved.length > 0) this.#log(`forge: control snapshot ${snapshot.id}: the rows up to its watermark changed in ${moved.length} stream(s) (${moved.slice(0, 3).join(', ')}): read from their beginning`);
      }
      const movedTenants = new Set(moved.map((k) => parseStreamKey(k).tenantId));
      const groups = new Map<string, RunDayTotals>();
      if (snapshot) addRunDays(groups, moved.length === 0 ? snapshot.groups : snapshot.groups.filter((g) => !movedTenants.has(g.tenantId)));
      const since = await this.#store.runDayTotalsSince(after);
      addRunDays(groups, since.groups);
      addCounts(rows, since.streamRows);
      this.#groups = groups;
      this.#watermark = since.watermark;
      this.#streamRows = rows;
      this.#origin = snapshot ? 'snapshot' : 'log';
      return { origin: this.#origin, ...(snapshot ? { snapshotId: snapshot.id } : {}), groupsRead: since.groups.length, streamsReread: moved };
    });
  }

  /**
   * The groups held, up to a day past `now` (what the full scan reads: events up to a day ahead of the clock),
   * plus, with `current`, the log since the watermark (not kept: the next `take` reads it again).
   */
  async runDays(now: number, opts: { current?: boolean } = {}): Promise<RunDayTotals[]> {
    let groups = this.#groups;
    if (opts.current) {
      const since = await this.#serial(() => this.#store.runDayTotalsSince(this.#watermark));
      groups = new Map();
      addRunDays(groups, [...this.#groups.values()]);
      addRunDays(groups, since.groups);
    }
    const lastDay = Math.floor((now + DAY_MS) / DAY_MS);
    return [...groups.values()].filter((g) => dayFromLabel(g.day) <= lastDay);
  }

  /**
   * The background check: the whole log up to the loaded watermark, recomputed key by key, against the groups
   * the start-up applied. Returns the groups that differ (logged); the recomputed figures replace the held ones.
   * The caller re-bases the live state on the log when any differ: the full recompute is the authority.
   */
  verify(): Promise<{ checked: number; differing: string[] }> {
    return this.#serial(async () => {
      const watermark: Watermark = new Map(this.#watermark);
      const full = await this.#store.runDayTotalsSince(new Map(), watermark);
      const recomputed = new Map<string, RunDayTotals>();
      addRunDays(recomputed, full.groups);
      const differing: string[] = [];
      for (const k of new Set([...recomputed.keys(), ...this.#groups.keys()])) {
        const a = this.#groups.get(k);
        const b = recomputed.get(k);
        if (!a || !b || figures(a) !== figures(b)) differing.push(k.replaceAll('\u0000', '/'));
      }
      if (differing.length > 0) {
        this.#log(
          `forge: the control snapshot differed from the full recompute of the log in ${differing.length} (tenant/run/day) group(s), e.g. ${differing.slice(0, 3).join(', ')}: the recompute replaces it`,
        );
      }
      this.#groups = recomputed;
      this.#streamRows = full.streamRows;
      this.#watermark = new Map(watermark);
      return { checked: recomputed.size, differing };
    });
  }

  /**
   * Writes a snapshot: the held totals advanced by the log from their watermark up to the recorded chain heads
   * (rows known committed). No-op before `load`. `takenAt` is wall-clock time (the newest is used; older ones
   * leave by the table's TTL), not the guard's clock.
   */
  take(takenAt = Date.now()): Promise<{ id: string; groups: number } | undefined> {
    return this.#serial(async () => {
      if (this.#origin === undefined) return undefined;
      const upTo = await this.#store.costWatermark();
      // A stream read further at the start than its recorded head (rows past the head) keeps its watermark.
      for (const [t, s] of this.#watermark) if ((upTo.get(t) ?? 0) < s) upTo.set(t, s);
      const since = await this.#store.runDayTotalsSince(this.#watermark, upTo);
      addRunDays(this.#groups, since.groups);
      addCounts(this.#streamRows, since.streamRows);
      this.#watermark = since.watermark;
      const s = await this.#store.writeControlSnapshot({ watermark: this.#watermark, streamRows: this.#streamRows, groups: [...this.#groups.values()], takenAt });
      return { id: s.id, groups: s.groups.length };
    });
  }
}

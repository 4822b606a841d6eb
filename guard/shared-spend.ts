import { addOperationComponents, dayOf, OPERATION_COMPONENTS, operationSum, withoutDaily, zeroComponents, type ComponentMicros, type DaySpend, type Micros, type ScopeKey } from '../rules/index.ts';
import { LedgerError, onLiveRedis } from './ledger/errors.ts';
import { FastFailConnection, type Backoff } from './redis.ts';

/**
 * The spend that drives the stop conditions, shared by every API process (Redis): per scope, per UTC day,
 * the operation components (storage excluded: the guardrail burns it by the day), task and failure counts,
 * and the cumulative run totals. An event id counts once across processes. Without Redis the guardrail's
 * own memory is the whole truth and no SharedSpend is used.
 *
 * Redis can come back empty (restarted without persistence): an epoch key marks counters that are
 * complete. While it is missing, `add` answers 'unseeded' and the guard seeds the counters from the event
 * log (`seed`) before it trusts them again.
 */
export interface SpendItem {
  eventId: string;
  scopes: readonly ScopeKey[];
  /** Epoch ms the task finalized. */
  at: number;
  components: ComponentMicros;
  failed: boolean;
}

export interface ScopeSpendSnapshot {
  /** Days with activity among those asked for. */
  days: DaySpend[];
  run: { components: ComponentMicros; totalMicros: Micros; tasks: number };
}

export interface SeedScope {
  days: readonly DaySpend[];
  run: ScopeSpendSnapshot['run'];
}

export interface RedisSharedSpendOptions {
  url: string;
  keyPrefix?: string;
  commandTimeoutMs?: number;
  backoff?: Backoff;
  /** How long an event id is remembered, ms (default 8 days). */
  eventIdTtlMs?: number;
  onError?: (err: unknown) => void;
}

/**
 * The hash field of each per-operation component (daily burns are not counted here). The first four keep
 * the one-letter names they had before the list was generic, so counters survive an upgrade; a component
 * added later uses its key.
 */
const LEGACY_FIELD: Readonly<Record<string, string>> = { rli: 'r', gas: 'g', compute: 'c', llm: 'l' };
const COMPONENT_FIELDS = OPERATION_COMPONENTS.map((k) => LEGACY_FIELD[k] ?? k);
const FIELDS = [...COMPONENT_FIELDS, 't', 'f'];
const M = COMPONENT_FIELDS.length;

// KEYS: epoch, event keys (n), scope hashes.  ARGV: n, ttl, m, then m component fields, then per event:
// day, m amounts, failed, s1, s2, s3
const ADD_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n = tonumber(ARGV[1])
local m = tonumber(ARGV[3])
local out = {}
local p = 4 + m
for i = 1, n do
  local day = ARGV[p]
  if redis.call('SET', KEYS[1 + i], '1', 'NX', 'PX', ARGV[2]) then
    for j = 0, 2 do
      local idx = tonumber(ARGV[p + m + 2 + j])
      if idx > 0 then
        local k = KEYS[1 + n + idx]
        for c = 1, m do
          redis.call('HINCRBY', k, day .. ':' .. ARGV[3 + c], ARGV[p + c])
          redis.call('HINCRBY', k, 'run:' .. ARGV[3 + c], ARGV[p + c])
        end
        redis.call('HINCRBY', k, day .. ':t', 1)
        redis.call('HINCRBY', k, day .. ':f', ARGV[p + m + 1])
        redis.call('HINCRBY', k, 'run:t', 1)
      end
    end
    out[i] = 1
  else
    out[i] = 0
  end
  p = p + m + 5
end
return out
`;

/** Per-operation amounts read back from hash fields (daily burns 0). */
function componentsFrom(v: ReadonlyArray<string | null | undefined>, offset: number): ComponentMicros {
  const c = zeroComponents();
  OPERATION_COMPONENTS.forEach((k, i) => {
    const x = v[offset + i];
    c[k] = x ? Number(x) : 0;
  });
  return c;
}

export class RedisSharedSpend {
  private readonly conn: FastFailConnection;
  private readonly p: string;
  private readonly ttl: number;

  constructor(opts: RedisSharedSpendOptions) {
    this.p = opts.keyPrefix ?? 'forge:';
    this.ttl = opts.eventIdTtlMs ?? 8 * 86_400_000;
    this.conn = new FastFailConnection(opts.url, {
      commandTimeoutMs: opts.commandTimeoutMs ?? 2000,
      ...(opts.backoff ? { backoff: opts.backoff } : {}),
      name: 'forge-spend',
      onError: opts.onError ?? ((e) => console.error('[forge spend] redis:', e)),
    });
    this.conn.defineScripts({ forgeSpendAdd: { lua: ADD_LUA } });
  }

  private scopeKey(scope: ScopeKey): string {
    return `${this.p}g:s:${scope}`;
  }
  private get epochKey(): string {
    return `${this.p}g:epoch`;
  }

  private run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return onLiveRedis(this.conn, `shared spend ${what}`, fn);
  }


  /**
   * Adds each event once across processes. Returns, per item, whether this call counted it; 'unseeded'
   * when the counters are not complete (Redis came back empty): nothing was added, seed first.
   */
  async add(items: readonly SpendItem[]): Promise<boolean[] | 'unseeded'> {
    if (items.length === 0) return [];
    const scopeIdx = new Map<ScopeKey, number>();
    const argv: string[] = [String(items.length), String(this.ttl), String(M), ...COMPONENT_FIELDS];
    for (const it of items) {
      const c = it.components;
      argv.push(String(dayOf(it.at)), ...OPERATION_COMPONENTS.map((k) => String(c[k])), it.failed ? '1' : '0');
      for (let j = 0; j < 3; j++) {
        const s = it.scopes[j];
        if (s === undefined) {
          argv.push('0');
          continue;
        }
        let idx = scopeIdx.get(s);
        if (idx === undefined) scopeIdx.set(s, (idx = scopeIdx.size + 1));
        argv.push(String(idx));
      }
    }
    const keys = [this.epochKey, ...items.map((it) => `${this.p}g:ev:${it.eventId}`), ...[...scopeIdx.keys()].map((s) => this.scopeKey(s))];
    const r = await this.run('add', () => this.conn.script('forgeSpendAdd')(keys.length, ...keys, ...argv));
    if (r === -1 || r === '-1') return 'unseeded';
    return (r as Array<number | string>).map((x) => Number(x) === 1);
  }

  /** Marks events as counted without adding them (their spend is in a seed taken from the log). */
  async mark(items: readonly SpendItem[]): Promise<void> {
    await this.run('mark', async () => {
      const pipe = this.conn.redis.pipeline();
      for (const it of items) pipe.set(`${this.p}g:ev:${it.eventId}`, '1', 'PX', this.ttl, 'NX');
      await pipe.exec();
    });
  }

  /** The shared spend of each scope on the given UTC days, and its run totals. */
  async read(scopes: readonly ScopeKey[], days: readonly number[]): Promise<Map<ScopeKey, ScopeSpendSnapshot>> {
    const fields: string[] = [];
    for (const d of days) for (const f of FIELDS) fields.push(`${d}:${f}`);
    fields.push(...COMPONENT_FIELDS.map((f) => `run:${f}`), 'run:t');
    const out = new Map<ScopeKey, ScopeSpendSnapshot>();
    const rows = await this.run('read', async () => {
      const pipe = this.conn.redis.pipeline();
      for (const s of scopes) pipe.hmget(this.scopeKey(s), ...fields);
      const res = (await pipe.exec()) ?? [];
      return res.map(([err, v]) => {
        if (err) throw err;
        return v as Array<string | null>;
      });
    });
    const num = (x: string | null | undefined): number => (x ? Number(x) : 0);
    scopes.forEach((scope, i) => {
      const v = rows[i] ?? [];
      const list: DaySpend[] = [];
      days.forEach((day, k) => {
        const o = k * FIELDS.length;
        const components = componentsFrom(v, o);
        const tasks = num(v[o + M]);
        if (tasks === 0) return;
        list.push({ day, components, opsMicros: operationSum(components), tasks, failed: num(v[o + M + 1]) });
      });
      const r = days.length * FIELDS.length;
      const rc = componentsFrom(v, r);
      out.set(scope, { days: list, run: { components: rc, totalMicros: operationSum(rc), tasks: num(v[r + M]) } });
    });
    return out;
  }

  /** True when the counters are complete (seeded since Redis last came up empty). */
  async seeded(): Promise<boolean> {
    return (await this.run('epoch', () => this.conn.redis.exists(this.epochKey))) === 1;
  }

  /**
   * Seeds the counters from the event log (start-up on an empty Redis, or Redis came back empty). One
   * process seeds (a lock); the others wait for the epoch. Counters are replaced, not added to.
   */
  async seed(spend: () => Promise<Map<ScopeKey, SeedScope>>, waitMs = 60_000): Promise<'seeded' | 'already'> {
    const lock = `${this.p}g:seeding`;
    const deadline = Date.now() + waitMs;
    for (;;) {
      if (await this.seeded()) return 'already';
      const got = await this.run('lock', () => this.conn.redis.set(lock, String(process.pid), 'PX', 60_000, 'NX'));
      if (got === 'OK') break;
      if (Date.now() > deadline) throw new LedgerError('FORGE_ERR_LEDGER_UNAVAILABLE', 'shared spend: another process is still seeding the counters');
      await new Promise((r) => setTimeout(r, 100));
    }
    try {
      const all = await spend();
      await this.run('seed', async () => {
        const pipe = this.conn.redis.pipeline();
        for (const [scope, s] of all) {
          const h: Record<string, string> = {};
          for (const d of s.days) {
            OPERATION_COMPONENTS.forEach((k, i) => (h[`${d.day}:${COMPONENT_FIELDS[i] as string}`] = String(d.components[k])));
            Object.assign(h, { [`${d.day}:t`]: String(d.tasks), [`${d.day}:f`]: String(d.failed) });
          }
          OPERATION_COMPONENTS.forEach((k, i) => (h[`run:${COMPONENT_FIELDS[i] as string}`] = String(s.run.components[k])));
          h['run:t'] = String(s.run.tasks);
          pipe.del(this.scopeKey(scope));
          pipe.hset(this.scopeKey(scope), h);
        }
        pipe.set(this.epochKey, String(Date.now()));
        const res = (await pipe.exec()) ?? [];
        for (const [err] of res) if (err) throw err;
      });
      return 'seeded';
    } finally {
      await this.run('unlock', () => this.conn.redis.del(lock)).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    await this.conn.close();
  }
}

/** Shared spend minus a batch's own contributions: the state just before the batch, for per-event evaluation. */
export function withoutBatch(s: ScopeSpendSnapshot, batch: ReadonlyArray<{ day: number; components: ComponentMicros; failed: boolean }>): ScopeSpendSnapshot {
  const days = new Map(s.days.map((d) => [d.day, { ...d, components: { ...d.components } }]));
  const run = { components: { ...s.run.components }, totalMicros: s.run.totalMicros, tasks: s.run.tasks };
  for (const b of batch) {
    const c = b.components;
    const ops = operationSum(c);
    const d = days.get(b.day) ?? { day: b.day, components: zeroComponents(), opsMicros: 0, tasks: 0, failed: 0 };
    d.components = withoutDaily(addOperationComponents(d.components, c, -1));
    d.opsMicros -= ops;
    d.tasks -= 1;
    if (b.failed) d.failed -= 1;
    days.set(b.day, d);
    run.components = withoutDaily(addOperationComponents(run.components, c, -1));
    run.totalMicros -= ops;
    run.tasks -= 1;
  }
  return { days: [...days.values()].filter((d) => d.tasks > 0).sort((a, b) => b.day - a.day), run };
}

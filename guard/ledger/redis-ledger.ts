import type { Micros, ScopeKey } from '../../rules/index.ts';
import { LedgerError, onLiveRedis } from './errors.ts';
import { FastFailConnection } from '../redis.ts';
import type { ExpiredReservation, ExtendOutcome, LiveLedger, ReserveInput, ReserveOutcome, ScopeCaps, ScopeSnapshot } from './types.ts';
import { dayOf } from '../../rules/index.ts';
import { WEEK_DAYS, checkExtend, checkId, checkReserve, checkSpend } from './validate.ts';

export interface RedisLedgerOptions {
  /** redis://host:port[/db] */
  url: string;
  /** Prefix of every key (one namespace per deployment or test). Default 'forge:'. */
  keyPrefix?: string;
  /** A command not answered within this many ms rejects with FORGE_ERR_LEDGER_UNAVAILABLE. Default 500. */
  commandTimeoutMs?: number;
  /** Reconnect backoff. Default 50 ms doubling to 2 s. */
  backoff?: { initialMs: number; maxMs: number };
  /** How long an eventId is remembered for idempotence, ms (default 8 days). */
  eventIdTtlMs?: number;
  /** First error of each Redis outage (the methods reject as well). */
  onError?: (err: unknown) => void;
  /**
   * The spend counters as the event log has them (per scope: USD micros per UTC day of the last 8 days, and
   * the run total), to rebuild them when Redis comes back empty. Absent: rebuilt empty.
   */
  counterSeed?: () => Promise<Map<ScopeKey, CounterSeed>>;
}

/** One scope's spend counters, as the event log has them. */
export interface CounterSeed {
  /** USD micros per UTC day number. */
  days: ReadonlyMap<number, Micros>;
  runMicros: Micros;
}

/*
 * Keys (prefix P):
 *   P l:s:<scope>   hash: d:<utc day> -> spend micros, run -> cumulative, res -> reserved, n -> open count
 *   P l:r:<id>      hash: amt, exp, scopes (newline-joined)
 *   P l:exp         zset of open reservation ids by expiry
 *   P l:ev:<id>     eventId seen (SET NX PX ttl), shared by settle and record
 * Scripts touch scope hashes named from a reservation (not declared in KEYS): fine on one Redis node;
 * on a cluster the prefix must carry a hash tag, e.g. "{forge}:".
 * Amounts go into HINCRBY as the decimal strings they were given, so no float formatting touches them;
 * comparisons use Lua numbers (doubles), exact for integers below 2^53.
 */

const RELEASE_FN = `
local function release(prefix, amt, scopes)
  for scope in string.gmatch(scopes, '[^\\n]+') do
    local k = prefix .. scope
    redis.call('HINCRBY', k, 'res', '-' .. amt)
    redis.call('HINCRBY', k, 'n', -1)
  end
end
`;

// Scripts that change the counters run only on counters this process knows complete: the last two ARGVs
// are the epoch key and the epoch this process put its reservations into. A missing or other epoch (Redis
// came back empty, or is being rebuilt) refuses, and the caller rebuilds first.
const EPOCH_FN = `
local function epochOk()
  local e = redis.call('GET', ARGV[#ARGV - 1])
  return e and e == ARGV[#ARGV]
end
`;

// The admission rule, once for reserve and extend: for every scope and cap, used + reserved < cap. Returns
// nil when there is headroom, else the refusal {0, scope, cap, used, reserved, capMicros}.
// keyAt: index in KEYS of the first scope hash; argAt: index in ARGV of the first (scope, caps) quadruple.
const CAP_CHECK_FN = `
local function refusal(today, n, keyAt, argAt)
  local fields = {'run', 'res'}
  for d = 0, ${WEEK_DAYS - 1} do fields[#fields + 1] = 'd:' .. string.format('%d', today - d) end
  local names = {'day', 'week', 'run'}
  for i = 1, n do
    local base = argAt + (i - 1) * 4
    local v = redis.call('HMGET', KEYS[keyAt + i - 1], unpack(fields))
    local run = tonumber(v[1] or '0')
    local res = tonumber(v[2] or '0')
    local day = tonumber(v[3] or '0')
    local week = 0
    for j = 3, ${WEEK_DAYS + 2} do week = week + tonumber(v[j] or '0') end
    local used = {day, week, run}
    for c = 1, 3 do
      if used[c] + res >= tonumber(ARGV[base + c]) then
        return {0, ARGV[base], names[c], string.format('%.0f', used[c]), string.format('%.0f', res), ARGV[base + c]}
      end
    end
  end
  return nil
end
`;

// KEYS: reservation, exp zset, scope hashes...   ARGV: id, amount, today, expiresAt, n, scopesJoined, (scope, dayCap, weekCap, runCap)*n
const RESERVE_LUA = `${CAP_CHECK_FN}${EPOCH_FN}
if not epochOk() then return {-1} end
local existing = redis.call('HGET', KEYS[1], 'exp')
if existing then return {1, existing} end
local n = tonumber(ARGV[5])
local refused = refusal(tonumber(ARGV[3]), n, 3, 7)
if refused then return refused end
for i = 1, n do
  redis.call('HINCRBY', KEYS[2 + i], 'res', ARGV[2])
  redis.call('HINCRBY', KEYS[2 + i], 'n', 1)
end
redis.call('HSET', KEYS[1], 'amt', ARGV[2], 'exp', ARGV[4], 'scopes', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return {1, ARGV[4]}
`;

// KEYS: reservation, exp zset, event key, actual scope hashes...   ARGV: id, scope prefix, amount, event day, event ttl ms
const SETTLE_LUA = `${RELEASE_FN}${EPOCH_FN}
if not epochOk() then return {'epoch', '0'} end
local result = 'unknown'
local held = '0'
local r = redis.call('HMGET', KEYS[1], 'amt', 'scopes')
if r[1] then
  release(ARGV[2], r[1], r[2] or '')
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  result = 'settled'
  held = r[1]
end
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[5]) then
  for i = 4, #KEYS do
    redis.call('HINCRBY', KEYS[i], 'd:' .. ARGV[4], ARGV[3])
    redis.call('HINCRBY', KEYS[i], 'run', ARGV[3])
  end
end
return {result, held}
`;

// A top-up of an open reservation under the reserve rule (used + reserved < cap for every scope and cap).
// KEYS: reservation, scope hashes...   ARGV: amount, today, n, (scope, dayCap, weekCap, runCap)*n
const EXTEND_LUA = `${CAP_CHECK_FN}
local r = redis.call('HMGET', KEYS[1], 'amt', 'exp', 'scopes')
if not r[1] then return {2} end
local n = tonumber(ARGV[3])
local refused = refusal(tonumber(ARGV[2]), n, 2, 4)
if refused then return refused end
for scope in string.gmatch(r[3] or '', '[^\\n]+') do
  redis.call('HINCRBY', ARGV[4 + 4 * n] .. scope, 'res', ARGV[1])
end
local amt = redis.call('HINCRBY', KEYS[1], 'amt', ARGV[1])
return {1, tostring(amt), r[2]}
`;

// KEYS: event key, scope hashes...   ARGV: amount, event day, event ttl ms
const RECORD_LUA = `${EPOCH_FN}
if not epochOk() then return -1 end
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[3]) then return 0 end
for i = 2, #KEYS do
  redis.call('HINCRBY', KEYS[i], 'd:' .. ARGV[2], ARGV[1])
  redis.call('HINCRBY', KEYS[i], 'run', ARGV[1])
end
return 1
`;

// KEYS: exp zset   ARGV: now, limit, reservation prefix, scope prefix
const EXPIRE_LUA = `${RELEASE_FN}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local rk = ARGV[3] .. id
  local r = redis.call('HMGET', rk, 'amt', 'scopes', 'exp')
  redis.call('ZREM', KEYS[1], id)
  if r[1] then
    release(ARGV[4], r[1], r[2] or '')
    redis.call('DEL', rk)
    out[#out + 1] = id
    out[#out + 1] = r[1]
    out[#out + 1] = r[3] or '0'
    out[#out + 1] = r[2] or ''
  end
end
return out
`;

// Puts back one of this process's open reservations after Redis came back empty (skipped if present).
// KEYS: reservation, exp zset, scope hashes...   ARGV: id, amount, expiresAt, scopesJoined
const REASSERT_LUA = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 3, #KEYS do
  redis.call('HINCRBY', KEYS[i], 'res', ARGV[2])
  redis.call('HINCRBY', KEYS[i], 'n', 1)
end
redis.call('HSET', KEYS[1], 'amt', ARGV[2], 'exp', ARGV[3], 'scopes', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
`;

const EXPIRE_BATCH = 500;

/**
 * The shared live ledger for several API processes: every mutation is one Lua script, so reserve is
 * atomic over all scopes and two processes enforce one budget. A Redis that cannot be reached makes
 * every method reject with FORGE_ERR_LEDGER_UNAVAILABLE within the command timeout.
 */
export class RedisLedger implements LiveLedger {
  private readonly conn: FastFailConnection;
  private readonly p: string;
  private readonly eventTtl: number;
  private readonly counterSeed: RedisLedgerOptions['counterSeed'];
  private readonly onErr: (err: unknown) => void;
  private closed = false;
  /**
   * This process's open reservations: after Redis comes back empty they are put back before this process
   * admits again, so tasks in flight keep counting against the caps.
   */
  private readonly mine = new Map<string, { scopes: ScopeKey[]; amountMicros: Micros; expiresAt: number }>();
  /** The counters' epoch this process has put its reservations into; a new one means Redis lost them. */
  private epoch: string | undefined;
  private rebuilding: Promise<void> | undefined;

  constructor(opts: RedisLedgerOptions) {
    this.p = opts.keyPrefix ?? 'forge:';
    this.eventTtl = opts.eventIdTtlMs ?? 8 * 86_400_000;
    this.conn = new FastFailConnection(opts.url, {
      commandTimeoutMs: opts.commandTimeoutMs ?? 500,
      ...(opts.backoff ? { backoff: opts.backoff } : {}),
      name: 'forge-ledger',
      onError: (e) => this.onErr(e),
    });
    this.onErr = opts.onError ?? ((e) => console.error('[forge ledger] redis:', e));
    // Every (re)connection checks that the counters survived; if Redis came back empty, rebuild them.
    this.conn.redis.on('ready', () => {
      if (!this.closed) this.ensureEpoch().catch((e: unknown) => this.onErr(e));
    });
    this.counterSeed = opts.counterSeed;
    this.conn.defineScripts({
      forgeLedgerReassert: { lua: REASSERT_LUA },
      forgeLedgerExtend: { lua: EXTEND_LUA },
      forgeLedgerReserve: { lua: RESERVE_LUA },
      forgeLedgerSettle: { lua: SETTLE_LUA },
      forgeLedgerRecord: { lua: RECORD_LUA },
      forgeLedgerExpire: { lua: EXPIRE_LUA },
    });
  }

  /** Resolves once connected and the counters are complete (or rejects with FORGE_ERR_LEDGER_UNAVAILABLE). */
  async ready(): Promise<void> {
    await this.run('ready', async () => undefined);
    await this.ensureEpoch();
  }

  private get epochKey(): string {
    return `${this.p}l:epoch`;
  }

  /**
   * Makes sure the counters are complete and hold this process's open reservations. Redis that came back
   * empty has no epoch: one process seeds the spend counters from the event log (a lock), sets a new epoch,
   * and every process, seeing an epoch other than its own, puts its open reservations back. Admissions of
   * a process fail closed until it has done so.
   */
  ensureEpoch(): Promise<void> {
    this.rebuilding ??= this.rebuildOnce().finally(() => {
      this.rebuilding = undefined;
    });
    return this.rebuilding;
  }

  private async rebuildOnce(): Promise<void> {
    const r = this.conn.redis;
    let cur = await this.run('epoch', () => r.get(this.epochKey));
    if (cur === null) {
      const lock = `${this.p}l:seeding`;
      const got = await this.run('lock', () => r.set(lock, String(process.pid), 'PX', 60_000, 'NX'));
      if (got === 'OK') {
        try {
          const seed = this.counterSeed ? await this.counterSeed() : new Map<ScopeKey, CounterSeed>();
          await this.run('seed', async () => {
            const pipe = r.pipeline();
            for (const [scope, c] of seed) {
              const h: Record<string, string> = { run: String(c.runMicros) };
              for (const [day, micros] of c.days) h[`d:${day}`] = String(micros);
              pipe.hset(this.scopeKey(scope), h);
            }
            pipe.set(this.epochKey, `${Date.now()}.${process.pid}.${Math.random().toString(36).slice(2, 8)}`);
            for (const [err] of (await pipe.exec()) ?? []) if (err) throw err;
          });
        } finally {
          await this.run('unlock', () => r.del(lock)).catch(() => undefined);
        }
      } else {
        const until = Date.now() + 60_000;
        while ((cur = await this.run('epoch', () => r.get(this.epochKey))) === null) {
          if (Date.now() > until) throw new LedgerError('FORGE_ERR_LEDGER_UNAVAILABLE', 'another process is still rebuilding the counters');
          await new Promise((res) => setTimeout(res, 50));
        }
      }
      cur = await this.run('epoch', () => r.get(this.epochKey));
    }
    if (cur === null || cur === this.epoch) return;
    const now = Date.now();
    for (const [id, x] of this.mine) {
      if (x.expiresAt <= now) {
        this.mine.delete(id);
        continue;
      }
      const keys = [this.resKey(id), this.expKey, ...x.scopes.map((s) => this.scopeKey(s))];
      await this.run('reassert', () => this.script('forgeLedgerReassert')(keys.length, ...keys, id, String(x.amountMicros), String(x.expiresAt), x.scopes.join('\n')));
    }
    this.epoch = cur;
  }

  private scopeKey(scope: ScopeKey): string {
    return `${this.p}l:s:${scope}`;
  }
  private resKey(id: string): string {
    return `${this.p}l:r:${id}`;
  }
  private get expKey(): string {
    return `${this.p}l:exp`;
  }
  private eventKey(id: string): string {
    return `${this.p}l:ev:${id}`;
  }

  // Scripts defined without numberOfKeys take the key count as their first argument.
  private script(name: string): (...args: (string | number)[]) => Promise<unknown> {
    try {
      return this.conn.script(name);
    } catch (e) {
      throw new LedgerError('FORGE_ERR_LEDGER_INTERNAL', (e as Error).message);
    }
  }

  async reserve(input: ReserveInput): Promise<ReserveOutcome> {
    this.assertOpen();
    checkReserve(input);
    const expiresAt = input.now + input.ttlMs;
    const keys = [this.resKey(input.reservationId), this.expKey, ...input.scopes.map((s) => this.scopeKey(s.scope))];
    const argv: (string | number)[] = [
      input.reservationId,
      String(input.amountMicros),
      String(dayOf(input.now)),
      String(expiresAt),
      String(input.scopes.length),
      input.scopes.map((s) => s.scope).join('\n'),
    ];
    for (const { scope, caps } of input.scopes) argv.push(scope, String(caps.dayHard), String(caps.weekHard), String(caps.runCap));
    // The counters must be complete and hold this process's reservations before it admits: after Redis
    // came back empty (no epoch, or not ours) the admission waits for the rebuild, or fails closed with it.
    const r = (await this.inEpoch('reserve', (epoch) => this.script('forgeLedgerReserve')(keys.length, ...keys, ...argv, ...epoch), (x) => Number((x as unknown[])[0]) === -1)) as Array<string | number>;
    if (Number(r[0]) === 1) {
      if (this.mine.size >= 100_000) for (const [id, x] of this.mine) if (x.expiresAt <= input.now) this.mine.delete(id);
      this.mine.set(input.reservationId, { scopes: input.scopes.map((x) => x.scope), amountMicros: input.amountMicros, expiresAt: Number(r[1]) });
      return { ok: true, reservationId: input.reservationId, expiresAt: Number(r[1]) };
    }
    return {
      ok: false,
      scope: String(r[1]),
      cap: String(r[2]) as 'day' | 'week' | 'run',
      usedMicros: Number(r[3]),
      reservedMicros: Number(r[4]),
      capMicros: Number(r[5]),
    };
  }

  async settle(
    reservationId: string,
    actual: { eventId: string; amountMicros: Micros; eventTime: number; scopes: readonly ScopeKey[] },
  ): Promise<'settled' | 'unknown'> {
    return (await this.settleDetailed(reservationId, actual)).status;
  }

  async settleDetailed(
    reservationId: string,
    actual: { eventId: string; amountMicros: Micros; eventTime: number; scopes: readonly ScopeKey[] },
  ): Promise<{ status: 'settled' | 'unknown'; reservedMicros: Micros }> {
    this.assertOpen();
    checkId(reservationId, 'reservationId');
    checkSpend(actual.eventId, actual.scopes, actual.amountMicros, actual.eventTime);
    const keys = [this.resKey(reservationId), this.expKey, this.eventKey(actual.eventId), ...actual.scopes.map((s) => this.scopeKey(s))];
    const r = (await this.inEpoch('settle', (epoch) =>
      this.script('forgeLedgerSettle')(
        keys.length,
        ...keys,
        reservationId,
        `${this.p}l:s:`,
        String(actual.amountMicros),
        String(dayOf(actual.eventTime)),
        String(this.eventTtl),
        ...epoch,
      ),
      (x) => (x as unknown[])[0] === 'epoch',
    )) as [string, string | number];
    this.mine.delete(reservationId);
    return r[0] === 'settled' ? { status: 'settled', reservedMicros: Number(r[1]) } : { status: 'unknown', reservedMicros: 0 };
  }

  async extend(input: { reservationId: string; scopes: ReadonlyArray<{ scope: ScopeKey; caps: ScopeCaps }>; amountMicros: Micros; now: number }): Promise<ExtendOutcome> {
    this.assertOpen();
    checkExtend(input);
    const keys = [this.resKey(input.reservationId), ...input.scopes.map((s) => this.scopeKey(s.scope))];
    const argv: string[] = [String(input.amountMicros), String(dayOf(input.now)), String(input.scopes.length)];
    for (const { scope, caps } of input.scopes) argv.push(scope, String(caps.dayHard), String(caps.weekHard), String(caps.runCap));
    argv.push(`${this.p}l:s:`);
    const r = (await this.run('extend', () => this.script('forgeLedgerExtend')(keys.length, ...keys, ...argv))) as Array<string | number>;
    if (Number(r[0]) === 2) return { ok: false, unknown: true };
    if (Number(r[0]) === 1) {
      const mine = this.mine.get(input.reservationId);
      if (mine) mine.amountMicros = Number(r[1]);
      return { ok: true, reservedMicros: Number(r[1]), expiresAt: Number(r[2]) };
    }
    return { ok: false, scope: String(r[1]), cap: String(r[2]) as 'day' | 'week' | 'run', usedMicros: Number(r[3]), reservedMicros: Number(r[4]), capMicros: Number(r[5]) };
  }

  async record(eventId: string, scopes: readonly ScopeKey[], amountMicros: Micros, eventTime: number): Promise<boolean> {
    this.assertOpen();
    checkSpend(eventId, scopes, amountMicros, eventTime);
    const keys = [this.eventKey(eventId), ...scopes.map((s) => this.scopeKey(s))];
    const r = await this.inEpoch(
      'record',
      (epoch) => this.script('forgeLedgerRecord')(keys.length, ...keys, String(amountMicros), String(dayOf(eventTime)), String(this.eventTtl), ...epoch),
      (x) => Number(x) === -1,
    );
    return Number(r) === 1;
  }

  async expire(now: number): Promise<ExpiredReservation[]> {
    this.assertOpen();
    if (!Number.isFinite(now)) throw new LedgerError('FORGE_ERR_LEDGER_INPUT', 'now must be epoch milliseconds', { field: 'now' });
    const out: ExpiredReservation[] = [];
    for (;;) {
      const flat = (await this.run('expire', () =>
        this.script('forgeLedgerExpire')(1, this.expKey, String(now), String(EXPIRE_BATCH), `${this.p}l:r:`, `${this.p}l:s:`),
      )) as string[];
      for (let i = 0; i + 3 < flat.length; i += 4) {
        this.mine.delete(flat[i]!);
        out.push({
          reservationId: flat[i]!,
          amountMicros: Number(flat[i + 1]),
          expiresAt: Number(flat[i + 2]),
          scopes: flat[i + 3]!.split('\n').filter((s) => s.length > 0),
        });
      }
      if (flat.length / 4 < EXPIRE_BATCH) break;
    }
    return out;
  }

  async snapshot(scope: ScopeKey, now: number): Promise<ScopeSnapshot> {
    this.assertOpen();
    const today = dayOf(now);
    const dayFields = Array.from({ length: WEEK_DAYS }, (_, d) => `d:${today - d}`);
    const v = await this.run('snapshot', () => this.conn.redis.hmget(this.scopeKey(scope), 'run', 'res', 'n', ...dayFields));
    const num = (x: string | null | undefined): number => (x ? Number(x) : 0);
    let week = 0;
    for (let i = 3; i < v.length; i++) week += num(v[i]);
    return { dayMicros: num(v[3]), weekMicros: week, runMicros: num(v[0]), reservedMicros: num(v[1]), openReservations: num(v[2]) };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.conn.close();
  }

  /**
   * Runs a counter-changing script in this process's epoch: if Redis lost the counters (or another process
   * is rebuilding them), rebuild first and run it once more; refused again, the ledger is unavailable.
   */
  private async inEpoch(what: string, fn: (epoch: [string, string]) => Promise<unknown>, refused: (r: unknown) => boolean): Promise<unknown> {
    if (this.rebuilding || this.epoch === undefined) await this.ensureEpoch();
    let r = await this.run(what, () => fn([this.epochKey, this.epoch ?? '']));
    if (!refused(r)) return r;
    await this.ensureEpoch();
    r = await this.run(what, () => fn([this.epochKey, this.epoch ?? '']));
    if (refused(r)) throw new LedgerError('FORGE_ERR_LEDGER_UNAVAILABLE', `${what}: the shared counters are being rebuilt`);
    return r;
  }

  private run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return onLiveRedis(this.conn, what, fn);
  }


  private assertOpen(): void {
    if (this.closed) throw new LedgerError('FORGE_ERR_LEDGER_CLOSED', 'the ledger is closed');
  }
}

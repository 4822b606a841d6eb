import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { BillingError } from '../errors.ts';
import { monthKey } from '../limits.ts';
import { ACCOUNTS, freeRunsAccount, type CreditUnit, type LedgerEntry, type TxKind } from './entries.ts';
import {
  checkCredit,
  checkHold,
  checkId,
  checkSettle,
  type Balance,
  type CreditLedgerApi,
  type HoldGuard,
  type HoldOutcome,
  type HoldRequest,
  type SettleOutcome,
} from './ledger.ts';

/*
 * The credit ledger for several processes: each movement is one Lua script, which Redis runs atomically, so the
 * balance check and the entries it writes cannot interleave with another process's. Per owner (one hash slot,
 * `{owner}`): `bal` (hash unit|account -> integer), `tx` (applied tx ids), `holds` (open holds), `closed`
 * (settled or released hold ids) and `log` (the append-only entries, JSON, in order).
 */
const LIB = `
local owner, now, memo = ARGV[1], ARGV[2], ARGV[3]
local function bal(unit, acct) return tonumber(redis.call('HGET', KEYS[1], unit .. '|' .. acct) or '0') end
local function post(txId, kind, ref, lines)
  local sum = {}
  for _, l in ipairs(lines) do sum[l[1]] = (sum[l[1]] or 0) + l[3] end
  for u, v in pairs(sum) do if v ~= 0 then return redis.error_reply('FORGE_ERR_BILLING_LEDGER_UNBALANCED ' .. txId) end end
  for _, l in ipairs(lines) do
    if string.sub(l[2], 1, 9) ~= 'platform:' and bal(l[1], l[2]) + l[3] < 0 then
      return redis.error_reply('FORGE_ERR_BILLING_LEDGER negative ' .. l[2])
    end
  end
  for i, l in ipairs(lines) do
    redis.call('HINCRBY', KEYS[1], l[1] .. '|' .. l[2], l[3])
    redis.call('RPUSH', KEYS[5], cjson.encode({txId = txId, seq = i - 1, owner = owner, account = l[2], unit = l[1],
      amount = tostring(l[3]), kind = kind, ref = ref, at = now, memo = memo}))
  end
  redis.call('SADD', KEYS[2], txId)
  return false
end
`;

const CREDIT = `${LIB}
local kind, ref, credits, from = ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
local txId = kind .. ':' .. ref
if redis.call('SISMEMBER', KEYS[2], txId) == 1 then return {'replay', tostring(bal('credit', 'available'))} end
local err = post(txId, kind, ref, {{'credit', from, -credits}, {'credit', 'available', credits}})
if err then return err end
return {'ok', tostring(bal('credit', 'available'))}
`;

const HOLD = `${LIB}
local holdId, credits, monthly, month = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local existing = redis.call('HGET', KEYS[3], holdId)
if existing then return {'replay', existing, tostring(bal('credit', 'available'))} end
if redis.call('SISMEMBER', KEYS[4], holdId) == 1 then return {'closed'} end
local freeAcct = 'free_runs:' .. month
if monthly > 0 then
  local g = 'free_runs_grant:' .. owner .. ':' .. month
  if redis.call('SISMEMBER', KEYS[2], g) == 0 then
    local err = post(g, 'free_runs_grant', month, {{'run', 'platform:free_runs_issued', -monthly}, {'run', freeAcct, monthly}})
    if err then return err end
  end
end
local h
if bal('run', freeAcct) >= 1 then
  local err = post('hold:' .. holdId, 'hold', holdId, {{'run', freeAcct, -1}, {'run', 'free_runs_held', 1}})
  if err then return err end
  h = cjson.encode({unit = 'run', amount = 1, at = now, from = freeAcct})
else
  local avail = bal('credit', 'available')
  if avail < credits then return {'insufficient', tostring(avail)} end
  local err = post('hold:' .. holdId, 'hold', holdId, {{'credit', 'available', -credits}, {'credit', 'held', credits}})
  if err then return err end
  h = cjson.encode({unit = 'credit', amount = credits, at = now, from = 'available'})
end
redis.call('HSET', KEYS[3], holdId, h)
return {'ok', h, tostring(bal('credit', 'available'))}
`;

// mode 'settle' (ARGV[6] = actual credits) or 'release'
const CLOSE = `${LIB}
local holdId, mode, actual = ARGV[4], ARGV[5], tonumber(ARGV[6])
local raw = redis.call('HGET', KEYS[3], holdId)
if not raw then
  if redis.call('SISMEMBER', KEYS[4], holdId) == 1 then return {'already_closed'} end
  return {'unknown_hold'}
end
local h = cjson.decode(raw)
local amount = tonumber(h.amount)
local charged, refunded, lines = 0, 0, nil
if mode == 'release' then
  refunded = amount
  if h.unit == 'run' then lines = {{'run', 'free_runs_held', -1}, {'run', h.from, 1}}
  else lines = {{'credit', 'held', -amount}, {'credit', 'available', amount}} end
elseif h.unit == 'run' then
  charged = 1
  lines = {{'run', 'free_runs_held', -1}, {'run', 'platform:free_runs_used', 1}}
else
  charged = math.min(actual, amount + bal('credit', 'available'))
  refunded = amount - charged
  lines = {{'credit', 'held', -amount}, {'credit', 'platform:consumed', charged}}
  if refunded ~= 0 then table.insert(lines, {'credit', 'available', refunded}) end
end
local err = post(mode .. ':' .. holdId, mode, holdId, lines)
if err then return err end
redis.call('HDEL', KEYS[3], holdId)
redis.call('SADD', KEYS[4], holdId)
return {'ok', h.unit, tostring(amount), tostring(charged), tostring(refunded), tostring(bal('credit', 'available'))}
`;

const BALANCE = `
return {redis.call('HGET', KEYS[1], 'credit|available') or '0', redis.call('HGET', KEYS[1], 'credit|held') or '0',
  tostring(redis.call('HLEN', KEYS[3])), redis.call('HGET', KEYS[1], 'run|' .. ARGV[1]) or '0'}
`;

const PREFIX_RE = /^[A-Za-z0-9:._-]{0,64}$/;

/**
 * The Redis + Lua credit ledger: the same behaviour as CreditLedger (one contract suite), safe across
 * processes. When Redis is unreachable every movement fails (FORGE_ERR_STORE_UNAVAILABLE): fail closed.
 * The entries stay in Redis (`log`); run Redis with AOF, or mirror the log to ClickHouse credit_entries.
 */
export class RedisCreditLedger implements CreditLedgerApi {
  private readonly shas = new Map<string, string>();

  constructor(
    private readonly redis: Redis,
    private readonly opts: { prefix?: string; guard?: HoldGuard } = {},
  ) {
    if (!PREFIX_RE.test(opts.prefix ?? '')) throw new BillingError('FORGE_ERR_BILLING_CONFIG', 'prefix', { field: 'prefix' });
  }

  private keys(owner: string): string[] {
    const base = `${this.opts.prefix ?? 'forge:credits:'}{${owner}}:`;
    return ['bal', 'tx', 'holds', 'closed', 'log'].map((k) => base + k);
  }

  private async run(script: string, owner: string, args: (string | number)[]): Promise<string[]> {
    let sha = this.shas.get(script);
    if (!sha) {
      sha = createHash('sha1').update(script).digest('hex');
      this.shas.set(script, sha);
    }
    const keys = this.keys(owner);
    try {
      try {
        return (await this.redis.evalsha(sha, keys.length, ...keys, ...args)) as string[];
      } catch (err) {
        if (!(err instanceof Error) || !err.message.includes('NOSCRIPT')) throw err;
        return (await this.redis.eval(script, keys.length, ...keys, ...args)) as string[];
      }
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      if (msg.includes('FORGE_ERR_BILLING_LEDGER_UNBALANCED')) throw new BillingError('FORGE_ERR_BILLING_LEDGER_UNBALANCED', msg);
      if (msg.includes('FORGE_ERR_BILLING_LEDGER')) throw new BillingError('FORGE_ERR_BILLING_LEDGER', msg);
      throw new BillingError('FORGE_ERR_STORE_UNAVAILABLE', `redis: ${msg}`, { cause: err });
    }
  }

  async purchase(owner: string, purchaseId: string, credits: number, now: number, memo = ''): Promise<{ available: number; replay: boolean }> {
    return this.credit(owner, 'purchase', purchaseId, credits, ACCOUNTS.sales, now, memo);
  }

  async grant(owner: string, grantId: string, credits: number, now: number, memo = ''): Promise<{ available: number; replay: boolean }> {
    return this.credit(owner, 'grant', grantId, credits, ACCOUNTS.grants, now, memo);
  }

  private async credit(owner: string, kind: TxKind, ref: string, credits: number, from: string, now: number, memo: string) {
    checkCredit(owner, kind, ref, credits);
    const r = await this.run(CREDIT, owner, [owner, now, memo, kind, ref, credits, from]);
    return { available: Number(r[1]), replay: r[0] === 'replay' };
  }

  async hold(req: HoldRequest): Promise<HoldOutcome> {
    const monthly = checkHold(req);
    const g = this.opts.guard?.({ owner: req.owner, ...(req.runId !== undefined ? { runId: req.runId } : {}) });
    if (g && !g.ok) return { ok: false, reason: 'halted', scope: g.scope, state: g.state };
    const r = await this.run(HOLD, req.owner, [req.owner, req.now, req.memo ?? '', req.holdId, req.credits, monthly, monthKey(req.now)]);
    switch (r[0]) {
      case 'ok':
      case 'replay': {
        const h = JSON.parse(r[1] as string) as { unit: CreditUnit; amount: number };
        return { ok: true, holdId: req.holdId, unit: h.unit, amount: Number(h.amount), available: Number(r[2]), replay: r[0] === 'replay' };
      }
      case 'insufficient':
        return { ok: false, reason: 'insufficient_credits', available: Number(r[1]), needed: req.credits };
      default:
        throw new BillingError('FORGE_ERR_BILLING_INPUT', `hold "${req.holdId}" was already settled or released`, { field: 'holdId' });
    }
  }

  async settle(owner: string, holdId: string, actualCredits: number, now: number): Promise<SettleOutcome> {
    checkSettle(owner, holdId, actualCredits);
    return this.close(owner, holdId, 'settle', actualCredits, now);
  }

  async release(owner: string, holdId: string, now: number): Promise<SettleOutcome> {
    checkId('owner', owner);
    checkId('holdId', holdId);
    return this.close(owner, holdId, 'release', 0, now);
  }

  private async close(owner: string, holdId: string, mode: 'settle' | 'release', actual: number, now: number): Promise<SettleOutcome> {
    const memo = mode === 'settle' ? `actual ${actual}` : 'refund of unused hold';
    const r = await this.run(CLOSE, owner, [owner, now, memo, holdId, mode, actual]);
    if (r[0] !== 'ok') return { ok: false, reason: r[0] === 'already_closed' ? 'already_closed' : 'unknown_hold', holdId };
    const [, unit, held, charged, refunded, available] = r as [string, CreditUnit, string, string, string, string];
    const ref = Number(refunded);
    return {
      ok: true,
      holdId,
      unit,
      held: Number(held),
      charged: Number(charged),
      refunded: Math.max(0, ref),
      shortfall: mode === 'settle' && unit === 'credit' ? actual - Number(charged) : 0,
      available: Number(available),
    };
  }

  async openHold(owner: string, holdId: string): Promise<{ unit: CreditUnit; amount: number; at: number } | undefined> {
    checkId('owner', owner);
    checkId('holdId', holdId);
    let raw: string | null;
    try {
      raw = await this.redis.hget(this.keys(owner)[2]!, holdId);
    } catch (err) {
      throw new BillingError('FORGE_ERR_STORE_UNAVAILABLE', `redis: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    if (!raw) return undefined;
    const h = JSON.parse(raw) as { unit: CreditUnit; amount: number; at: string | number };
    return { unit: h.unit, amount: Number(h.amount), at: Number(h.at) };
  }

  async balance(owner: string, now: number): Promise<Balance> {
    checkId('owner', owner);
    const r = await this.run(BALANCE, owner, [freeRunsAccount(monthKey(now))]);
    return { owner, available: Number(r[0]), held: Number(r[1]), openHolds: Number(r[2]), freeRunsLeft: Number(r[3]) };
  }

  /** The owner's entries, in append order (auditing, mirroring to ClickHouse). */
  async entries(owner: string): Promise<LedgerEntry[]> {
    checkId('owner', owner);
    try {
      const rows = await this.redis.lrange(this.keys(owner)[4] as string, 0, -1);
      return rows.map((s) => {
        const e = JSON.parse(s) as Omit<LedgerEntry, 'amount' | 'at'> & { amount: string; at: string };
        return { ...e, amount: Number(e.amount), at: Number(e.at) };
      });
    } catch (err) {
      throw new BillingError('FORGE_ERR_STORE_UNAVAILABLE', 'redis: reading entries', { cause: err });
    }
  }
}

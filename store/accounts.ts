import { createHash } from 'node:crypto';
import type { ClickHouseClient } from '@clickhouse/client';
import { STORE_ERROR_CODES, StoreError } from './errors.ts';
import { checkTime } from './scope.ts';

/** One version of a user (migration 0016). Secrets arrive already hashed or sealed: the store never sees them in clear. */
export interface UserRecord {
  userId: string;
  /** Lowercased. */
  email: string;
  tenantId: string;
  roles: string[];
  /** A memory-hard hash (accounts/password.ts); '' for a user who signs in only through OIDC. */
  passwordHash: string;
  emailVerified: boolean;
  /** The TOTP secret, sealed (AES-256-GCM); '' when none was set up. */
  totpSecret: string;
  totpEnabled: boolean;
  /** The last TOTP time step accepted (a code is good once). */
  totpLastStep: number;
  /** sha256 hex of each unused recovery code. */
  recoveryCodes: string[];
  oidcIssuer: string;
  oidcSubject: string;
  /** Epoch ms. */
  createdAt: number;
  version: number;
}

export type AccountTokenKind = 'session' | 'verify' | 'challenge' | 'oidc' | 'attempt';

/** One version of an account token (migration 0017): only the sha256 of the token is kept. */
export interface AccountTokenRecord {
  tokenHash: string;
  kind: AccountTokenKind;
  userId: string;
  /** JSON or a short value the kind defines (never a secret in clear). */
  data: string;
  createdAt: number;
  expiresAt: number;
  usedAt: number | null;
  version: number;
}

const HEX64 = /^[0-9a-f]{64}$/;

function bad(field: string, why: string): StoreError {
  return new StoreError(STORE_ERROR_CODES.INVALID, `${field} ${why}`, { field });
}

function token(row: Record<string, unknown>): string {
  return createHash('sha256').update(JSON.stringify(row)).digest('hex');
}

const USER_COLUMNS = `user_id, email, tenant_id, roles, password_hash, email_verified, totp_secret, totp_enabled, totp_last_step,
  recovery_codes, oidc_issuer, oidc_subject, toUnixTimestamp64Milli(created_at) AS c, version`;

function userOf(r: Record<string, unknown>): UserRecord {
  return {
    userId: String(r.user_id),
    email: String(r.email),
    tenantId: String(r.tenant_id),
    roles: (r.roles as unknown[]).map(String),
    passwordHash: String(r.password_hash),
    emailVerified: Number(r.email_verified) === 1,
    totpSecret: String(r.totp_secret),
    totpEnabled: Number(r.totp_enabled) === 1,
    totpLastStep: Number(r.totp_last_step),
    recoveryCodes: (r.recovery_codes as unknown[]).map(String),
    oidcIssuer: String(r.oidc_issuer),
    oidcSubject: String(r.oidc_subject),
    createdAt: Number(r.c),
    version: Number(r.version),
  };
}

/**
 * The accounts' tables: `users` and `account_tokens` (sessions, verification links, challenges, OIDC states,
 * sign-in attempts). Shared by every API process on the same store; reads take each record's newest version.
 */
export class AccountTables {
  readonly #client: ClickHouseClient;
  readonly #db: string;

  constructor(client: ClickHouseClient, database: string) {
    this.#client = client;
    this.#db = database;
  }

  async putUser(u: UserRecord): Promise<void> {
    if (!/^[0-9a-f]{24}$/.test(u.userId)) throw bad('userId', 'must be 24 hex digits');
    if (!Number.isSafeInteger(u.version) || u.version < 1) throw bad('version', 'must be a positive integer');
    const row = {
      user_id: u.userId,
      email: u.email,
      tenant_id: u.tenantId,
      roles: u.roles,
      password_hash: u.passwordHash,
      email_verified: u.emailVerified ? 1 : 0,
      totp_secret: u.totpSecret,
      totp_enabled: u.totpEnabled ? 1 : 0,
      totp_last_step: u.totpLastStep,
      recovery_codes: u.recoveryCodes,
      oidc_issuer: u.oidcIssuer,
      oidc_subject: u.oidcSubject,
      created_at: checkTime(u.createdAt, 'createdAt'),
      version: u.version,
    };
    await this.#client.insert({ table: `${this.#db}.users`, values: [row], format: 'JSONEachRow', clickhouse_settings: { insert_deduplication_token: token(row) } });
  }

  async #users(where: string, params: Record<string, unknown>): Promise<UserRecord[]> {
    const rs = await this.#client.query({
      query: `SELECT ${USER_COLUMNS} FROM ${this.#db}.users FINAL WHERE ${where} ORDER BY created_at, user_id LIMIT 10`,
      query_params: params,
      format: 'JSONEachRow',
    });
    return (await rs.json<Record<string, unknown>>()).map(userOf);
  }

  async user(userId: string): Promise<UserRecord | undefined> {
    return (await this.#users('user_id = {id:String}', { id: userId }))[0];
  }

  /** A tenant's users (each at its newest version), oldest first, at most `limit` (alerts address a team's users). */
  async usersOfTenant(tenantId: string, limit = 1000): Promise<UserRecord[]> {
    const rs = await this.#client.query({
      query: `SELECT ${USER_COLUMNS} FROM ${this.#db}.users FINAL WHERE tenant_id = {t:String} ORDER BY created_at, user_id LIMIT {n:UInt32}`,
      query_params: { t: tenantId, n: Math.max(1, Math.min(limit, 100_000)) },
      format: 'JSONEachRow',
    });
    return (await rs.json<Record<string, unknown>>()).map(userOf);
  }

  async userByEmail(email: string): Promise<UserRecord | undefined> {
    return (await this.#users('email = {email:String}', { email }))[0];
  }

  async userByOidc(issuer: string, subject: string): Promise<UserRecord | undefined> {
    return (await this.#users('oidc_issuer = {iss:String} AND oidc_subject = {sub:String}', { iss: issuer, sub: subject }))[0];
  }

  async putToken(t: AccountTokenRecord): Promise<void> {
    if (!HEX64.test(t.tokenHash)) throw bad('tokenHash', 'must be a sha256 hex digest');
    if (!Number.isSafeInteger(t.version) || t.version < 1) throw bad('version', 'must be a positive integer');
    const row = {
      token_hash: t.tokenHash,
      kind: t.kind,
      user_id: t.userId,
      data: t.data,
      created_at: checkTime(t.createdAt, 'createdAt'),
      expires_at: checkTime(t.expiresAt, 'expiresAt'),
      used_at: t.usedAt === null ? null : checkTime(t.usedAt, 'usedAt'),
      version: t.version,
    };
    await this.#client.insert({ table: `${this.#db}.account_tokens`, values: [row], format: 'JSONEachRow', clickhouse_settings: { insert_deduplication_token: token(row) } });
  }

  /** A token's newest version, or undefined. */
  async token(tokenHash: string): Promise<AccountTokenRecord | undefined> {
    const rs = await this.#client.query({
      query: `SELECT token_hash, kind, user_id, data, toUnixTimestamp64Milli(created_at) AS c, toUnixTimestamp64Milli(expires_at) AS e,
  if(isNull(used_at), NULL, toUnixTimestamp64Milli(assumeNotNull(used_at))) AS u, version
FROM ${this.#db}.account_tokens FINAL WHERE token_hash = {h:String} LIMIT 1`,
      query_params: { h: tokenHash },
      format: 'JSONEachRow',
    });
    const [r] = await rs.json<Record<string, unknown>>();
    if (!r) return undefined;
    return {
      tokenHash: String(r.token_hash),
      kind: String(r.kind) as AccountTokenKind,
      userId: String(r.user_id),
      data: String(r.data),
      createdAt: Number(r.c),
      expiresAt: Number(r.e),
      usedAt: r.u === null ? null : Number(r.u),
      version: Number(r.version),
    };
  }

  /**
   * Sign-in failures of a subject after its last success and after `sinceMs` (epoch ms), and the time of the
   * newest of them (0 when none).
   */
  async failures(subject: string, sinceMs: number): Promise<{ count: number; lastAt: number }> {
    const rs = await this.#client.query({
      query: `SELECT countIf(data = '0' AND created_at > last_ok) AS n, toUnixTimestamp64Milli(maxIf(created_at, data = '0' AND created_at > last_ok)) AS last
FROM (SELECT data, created_at, max(if(data = '1', created_at, toDateTime64(0, 3, 'UTC'))) OVER () AS last_ok
      FROM ${this.#db}.account_tokens FINAL
      WHERE kind = 'attempt' AND user_id = {s:String} AND created_at >= fromUnixTimestamp64Milli({since:Int64}, 'UTC'))`,
      query_params: { s: subject, since: checkTime(sinceMs, 'sinceMs') },
      format: 'JSONEachRow',
    });
    const [r] = await rs.json<{ n: number | string; last: number | string }>();
    return { count: Number(r?.n ?? 0), lastAt: Number(r?.n ?? 0) === 0 ? 0 : Number(r?.last ?? 0) };
  }
}

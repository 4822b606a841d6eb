import { createHash, randomBytes } from 'node:crypto';
import { generate as totpGenerate, generateSecret, generateURI, verify as totpVerify } from 'otplib';
import type { AccountTables, AccountTokenKind, AccountTokenRecord, GuardrailEventInput, GuardrailEventKind, UserRecord } from '../store/index.ts';
import { AccountError } from './errors.ts';
import type { Mailer } from './mailer.ts';
import { DUMMY_HASH, hashPassword, newToken, seal, sha256, unseal, verifyPassword } from './secrets.ts';

/** What the accounts need from the store: their tables, and the audit log (guardrail_events). */
export type AccountsBackend = Pick<AccountTables, 'putUser' | 'user' | 'userByEmail' | 'userByOidc' | 'putToken' | 'token' | 'failures'>;

/** Creating a tenant for a new account; false when it already exists (the API's tenant registry). */
export interface TenantCreator {
  create(tenantId: string, actor: string, reason: string): Promise<boolean>;
}

export interface AccountsOptions {
  tables: AccountsBackend;
  audit: (events: readonly GuardrailEventInput[]) => Promise<void>;
  mailer: Mailer;
  tenants: TenantCreator;
  /** AES-256 key that seals TOTP secrets (32 bytes). */
  secretKey: Buffer;
  /** Where the web UI is reached, for links in email (e.g. https://forge.example.com). */
  publicUrl: string;
  /** Roles of the user who signs a new tenant up, bound to that tenant (default OWNER_ROLES). */
  ownerRoles?: readonly string[];
  /** Failures (password or second factor) after which an email is locked, and for how long, ms. */
  lockout?: { maxFailures: number; windowMs: number };
  sessionTtlMs?: number;
  now?: () => number;
}

/** A signed-in user as the API sees it. */
export interface SessionUser {
  userId: string;
  email: string;
  tenantId: string;
  roles: string[];
  totpEnabled: boolean;
  /** The session token's hash (to end it). */
  sessionHash: string;
}

/** Signing in either opens a session or asks for the second factor (a short-lived challenge token). */
export type SignIn = { kind: 'session'; session: string; user: SessionUser } | { kind: 'challenge'; challenge: string };

const EMAIL_RE = /^[^\s@"<>()[\],;:\\]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/;
const TENANT_RE = /^[A-Za-z0-9._-]{1,64}$/;
const VERIFY_TTL_MS = 24 * 3_600_000;
const CHALLENGE_TTL_MS = 5 * 60_000;
const OIDC_TTL_MS = 10 * 60_000;
const RECOVERY_CODES = 10;
/**
 * What a self-service signup may do in its own tenant: run agents, see its spend and its audit trail. Not
 * `oncall` or `admin`: lifting a stop or changing budgets stays with the operators who set them.
 */
export const OWNER_ROLES: readonly string[] = ['runner', 'finance', 'auditor'];

function invalid(field: string, why: string): AccountError {
  return new AccountError('FORGE_ERR_VALIDATION', `${field} ${why}`, field);
}

/** A user's id: derived from the email, so two signups of one address (even in two processes) are one user. */
function userIdOf(email: string): string {
  return createHash('sha256').update(`forge-user\0${email}`).digest('hex').slice(0, 24);
}

function recoveryCode(): string {
  const s = randomBytes(10).toString('hex');
  return `${s.slice(0, 5)}-${s.slice(5, 10)}-${s.slice(10, 15)}-${s.slice(15)}`;
}

/**
 * Accounts of the web UI: signup with a verified email, password sign-in (scrypt), TOTP second factor with
 * one-time recovery codes, sessions, OIDC sign-in, and a lockout after repeated failures that every process
 * on the store shares. Every sign-in, failure and second-factor change goes into guardrail_events.
 */
export class Accounts {
  readonly #t: AccountsBackend;
  readonly #o: AccountsOptions;
  readonly #now: () => number;
  readonly #lock: { maxFailures: number; windowMs: number };
  readonly #sessionTtl: number;
  #maxVersion = 0;

  constructor(o: AccountsOptions) {
    this.#t = o.tables;
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#lock = o.lockout ?? { maxFailures: 5, windowMs: 15 * 60_000 };
    this.#sessionTtl = o.sessionTtlMs ?? 12 * 3_600_000;
  }

  #version(): number {
    this.#maxVersion = Math.max(this.#maxVersion + 1, this.#now() * 1000);
    return this.#maxVersion;
  }

  async #audit(kind: GuardrailEventKind, tenantId: string, actor: string, reason: string, details: Record<string, unknown>): Promise<void> {
    await this.#o.audit([{ at: this.#now(), kind, scope: tenantId === '' ? 'global' : `tenant:${tenantId}`, state: '', actor, reason, details }]);
  }

  async #putToken(kind: AccountTokenKind, userId: string, ttlMs: number, data = ''): Promise<string> {
    const token = newToken();
    const now = this.#now();
    await this.#t.putToken({ tokenHash: sha256(token), kind, userId, data, createdAt: now, expiresAt: now + ttlMs, usedAt: null, version: this.#version() });
    return token;
  }

  /** The live token of that kind, or undefined (unknown, used, expired, another kind). */
  async #liveToken(token: unknown, kind: AccountTokenKind): Promise<AccountTokenRecord | undefined> {
    if (typeof token !== 'string' || token.length < 20 || token.length > 100) return undefined;
    const r = await this.#t.token(sha256(token));
    if (!r || r.kind !== kind || r.usedAt !== null || r.expiresAt <= this.#now()) return undefined;
    return r;
  }

  async #useToken(r: AccountTokenRecord): Promise<void> {
    await this.#t.putToken({ ...r, usedAt: this.#now(), version: this.#version() });
  }

  async #putUser(u: UserRecord): Promise<UserRecord> {
    const next = { ...u, version: this.#version() };
    await this.#t.putUser(next);
    return next;
  }

  /**
   * Signs a new tenant up: the user (unverified) and the tenant, then a verification link by email. An email
   * already signed up is a conflict on `email`; a tenant that exists, on `tenant_id`.
   */
  async signup(input: { email: string; password: string; tenantId: string }): Promise<{ userId: string }> {
    const email = typeof input.email === 'string' ? input.email.trim().toLowerCase() : '';
    if (!EMAIL_RE.test(email) || email.length > 254) throw invalid('email', 'must be an email address');
    if (typeof input.password !== 'string' || input.password.length < 10 || input.password.length > 200) throw invalid('password', 'must be 10-200 characters');
    if (typeof input.tenantId !== 'string' || !TENANT_RE.test(input.tenantId)) throw invalid('tenant_id', 'must be 1-64 letters, digits, dot, dash or underscore');
    const userId = userIdOf(email);
    if (await this.#t.user(userId)) throw new AccountError('FORGE_ERR_CONFLICT', 'an account with this email exists; sign in instead', 'email');
    const passwordHash = await hashPassword(input.password);
    if (!(await this.#o.tenants.create(input.tenantId, `user:${userId}`, `signup of ${email}`))) {
      throw new AccountError('FORGE_ERR_CONFLICT', 'this tenant exists; choose another name', 'tenant_id');
    }
    const user = await this.#putUser({
      userId, email, tenantId: input.tenantId, roles: [...(this.#o.ownerRoles ?? OWNER_ROLES)], passwordHash, emailVerified: false,
      totpSecret: '', totpEnabled: false, totpLastStep: 0, recoveryCodes: [], oidcIssuer: '', oidcSubject: '', createdAt: this.#now(), version: 0,
    });
    await this.#audit('account_created', user.tenantId, `user:${userId}`, `account ${email} signed up`, { user_id: userId, email, method: 'password' });
    await this.#sendVerification(user);
    return { userId };
  }

  async #sendVerification(u: UserRecord): Promise<void> {
    const token = await this.#putToken('verify', u.userId, VERIFY_TTL_MS);
    const link = `${this.#o.publicUrl.replace(/\/$/, '')}/account/verify#token=${token}`;
    await this.#o.mailer.send({
      to: u.email,
      subject: 'Verify your Forge account',
      text: `Open this link within 24 hours to verify ${u.email} for Forge:\n\n${link}\n\nIf you did not sign up, ignore this message.\n`,
    });
  }

  /** Verifies an email with the token from its link (once). */
  async verifyEmail(token: string): Promise<void> {
    const t = await this.#liveToken(token, 'verify');
    if (!t) throw new AccountError('FORGE_ERR_NOT_FOUND', 'this link is not valid (used, expired or unknown); sign in to get a new one', 'token');
    const u = await this.#t.user(t.userId);
    if (!u) throw new AccountError('FORGE_ERR_NOT_FOUND', 'this link is not valid', 'token');
    await this.#useToken(t);
    await this.#putUser({ ...u, emailVerified: true });
    await this.#audit('email_verified', u.tenantId, `user:${u.userId}`, `email ${u.email} verified`, { user_id: u.userId, email: u.email });
  }

  async #lockedUntil(subject: string): Promise<number | undefined> {
    const now = this.#now();
    const f = await this.#t.failures(subject, Math.max(0, now - this.#lock.windowMs));
    if (f.count >= this.#lock.maxFailures && f.lastAt + this.#lock.windowMs > now) return f.lastAt + this.#lock.windowMs;
    return undefined;
  }

  async #attempt(subject: string, ok: boolean): Promise<void> {
    const now = this.#now();
    await this.#t.putToken({ tokenHash: sha256(newToken()), kind: 'attempt', userId: subject, data: ok ? '1' : '0', createdAt: now, expiresAt: now + this.#lock.windowMs, usedAt: null, version: this.#version() });
  }

  async #fail(subject: string, u: UserRecord | undefined, method: string, why: string): Promise<never> {
    await this.#attempt(subject, false);
    await this.#audit('sign_in_failed', u?.tenantId ?? '', u ? `user:${u.userId}` : 'anonymous', `sign-in failed (${why})`, { email: subject, method, why });
    if (method === 'totp') throw new AccountError('FORGE_ERR_TWO_FACTOR_INVALID', 'the code is not valid', 'code');
    throw new AccountError('FORGE_ERR_INVALID_CREDENTIALS', 'email or password is wrong', 'password');
  }

  async #refuseIfLocked(subject: string, u: UserRecord | undefined, method: string): Promise<void> {
    const until = await this.#lockedUntil(subject);
    if (until === undefined) return;
    await this.#audit('sign_in_failed', u?.tenantId ?? '', u ? `user:${u.userId}` : 'anonymous', 'sign-in refused: locked after repeated failures', { email: subject, method, why: 'locked', locked_until: new Date(until).toISOString() });
    throw new AccountError('FORGE_ERR_ACCOUNT_LOCKED', `too many failed sign-ins; try again after ${new Date(until).toISOString()}`, 'email', until);
  }

  /** Password sign-in: a session, or a second-factor challenge when TOTP is on. */
  async login(input: { email: string; password: string }): Promise<SignIn> {
    const email = typeof input.email === 'string' ? input.email.trim().toLowerCase() : '';
    if (email === '' || email.length > 254) throw invalid('email', 'must be an email address');
    if (typeof input.password !== 'string' || input.password.length > 200) throw invalid('password', 'must be at most 200 characters');
    const u = await this.#t.user(userIdOf(email));
    await this.#refuseIfLocked(email, u, 'password');
    // The hash runs for unknown emails too: the answer takes as long either way.
    const ok = await verifyPassword(input.password, u && u.passwordHash !== '' ? u.passwordHash : DUMMY_HASH);
    if (!u || !ok) return this.#fail(email, u, 'password', u ? 'wrong password' : 'unknown email');
    if (!u.emailVerified) {
      await this.#sendVerification(u);
      throw new AccountError('FORGE_ERR_EMAIL_UNVERIFIED', 'verify your email first: a new link was sent', 'email');
    }
    return this.#signedIn(u, 'password');
  }

  async #signedIn(u: UserRecord, method: string): Promise<SignIn> {
    if (u.totpEnabled) return { kind: 'challenge', challenge: await this.#putToken('challenge', u.userId, CHALLENGE_TTL_MS, method) };
    return this.#openSession(u, method);
  }

  async #openSession(u: UserRecord, method: string): Promise<SignIn> {
    await this.#attempt(u.email, true);
    const session = await this.#putToken('session', u.userId, this.#sessionTtl, method);
    await this.#audit('sign_in', u.tenantId, `user:${u.userId}`, `${u.email} signed in (${method}${u.totpEnabled ? ' + second factor' : ''})`, { user_id: u.userId, email: u.email, method, second_factor: u.totpEnabled });
    return { kind: 'session', session, user: this.#sessionUser(u, sha256(session)) };
  }

  #sessionUser(u: UserRecord, sessionHash: string): SessionUser {
    return { userId: u.userId, email: u.email, tenantId: u.tenantId, roles: [...u.roles], totpEnabled: u.totpEnabled, sessionHash };
  }

  /** The second step: a TOTP code or an unused recovery code answers the challenge. */
  async completeTwoFactor(input: { challenge: string; code: string }): Promise<SignIn> {
    const t = await this.#liveToken(input.challenge, 'challenge');
    if (!t) throw new AccountError('FORGE_ERR_NOT_FOUND', 'the sign-in expired; start again', 'challenge');
    const u = await this.#t.user(t.userId);
    if (!u) throw new AccountError('FORGE_ERR_NOT_FOUND', 'the sign-in expired; start again', 'challenge');
    await this.#refuseIfLocked(u.email, u, 'totp');
    const checked = await this.#checkSecondFactor(u, input.code);
    if (!checked) return this.#fail(u.email, u, 'totp', 'wrong code');
    await this.#useToken(t);
    return this.#openSession(checked, `${t.data || 'password'}+${checked.recoveryCodes.length < u.recoveryCodes.length ? 'recovery' : 'totp'}`);
  }

  /** The user after accepting `code` (TOTP step or recovery code spent, stored), or undefined if it is wrong. */
  async #checkSecondFactor(u: UserRecord, code: unknown): Promise<UserRecord | undefined> {
    if (typeof code !== 'string' || code.length > 40 || u.totpSecret === '') return undefined;
    const c = code.replace(/\s/g, '').toLowerCase();
    if (/^\d{6}$/.test(c)) {
      const secret = unseal(this.#o.secretKey, u.totpSecret, u.userId);
      const epoch = Math.floor(this.#now() / 1000);
      const r = await totpVerify({ secret, token: c, epoch, epochTolerance: 30, ...(u.totpLastStep > 0 ? { afterTimeStep: u.totpLastStep } : {}) });
      if (!r.valid) return undefined;
      return this.#putUser({ ...u, totpLastStep: Math.floor(epoch / 30) + r.delta });
    }
    const h = sha256(c);
    if (!u.totpEnabled || !u.recoveryCodes.includes(h)) return undefined;
    const next = await this.#putUser({ ...u, recoveryCodes: u.recoveryCodes.filter((x) => x !== h) });
    await this.#audit('two_factor_change', u.tenantId, `user:${u.userId}`, `a recovery code of ${u.email} was used`, { user_id: u.userId, change: 'recovery_code_used', remaining: next.recoveryCodes.length });
    return next;
  }

  /** The session's user, or undefined (unknown, ended, expired). */
  async session(token: string): Promise<SessionUser | undefined> {
    const t = await this.#liveToken(token, 'session');
    if (!t) return undefined;
    const u = await this.#t.user(t.userId);
    return u ? this.#sessionUser(u, t.tokenHash) : undefined;
  }

  async logout(token: string): Promise<void> {
    const t = await this.#liveToken(token, 'session');
    if (!t) return;
    await this.#useToken(t);
    const u = await this.#t.user(t.userId);
    if (u) await this.#audit('sign_out', u.tenantId, `user:${u.userId}`, `${u.email} signed out`, { user_id: u.userId });
  }

  async #user(userId: string): Promise<UserRecord> {
    const u = await this.#t.user(userId);
    if (!u) throw new AccountError('FORGE_ERR_NOT_FOUND', 'no such user');
    return u;
  }

  /** Starts TOTP setup: a new secret (sealed in the store), shown once as the otpauth URI. Not in force until confirmed. */
  async startTotp(userId: string): Promise<{ secret: string; uri: string }> {
    const u = await this.#user(userId);
    if (u.totpEnabled) throw new AccountError('FORGE_ERR_CONFLICT', 'two-factor sign-in is already on; turn it off first', 'code');
    const secret = generateSecret();
    await this.#putUser({ ...u, totpSecret: seal(this.#o.secretKey, secret, u.userId), totpLastStep: 0 });
    await this.#audit('two_factor_change', u.tenantId, `user:${u.userId}`, `${u.email} started two-factor setup`, { user_id: u.userId, change: 'setup_started' });
    return { secret, uri: generateURI({ issuer: 'Forge', label: u.email, secret }) };
  }

  /** Turns TOTP on once a code from the new secret checks; returns the recovery codes (shown once). */
  async enableTotp(userId: string, code: string): Promise<{ recoveryCodes: string[] }> {
    const u = await this.#user(userId);
    if (u.totpEnabled) throw new AccountError('FORGE_ERR_CONFLICT', 'two-factor sign-in is already on', 'code');
    if (u.totpSecret === '') throw new AccountError('FORGE_ERR_CONFLICT', 'start two-factor setup first', 'code');
    if (typeof code !== 'string' || !/^\d{6}$/.test(code.trim())) throw invalid('code', 'must be the 6-digit code of the authenticator');
    const checked = await this.#checkSecondFactor(u, code.trim());
    if (!checked) throw new AccountError('FORGE_ERR_TWO_FACTOR_INVALID', 'the code does not match; check the authenticator\'s clock and try again', 'code');
    const codes = Array.from({ length: RECOVERY_CODES }, recoveryCode);
    await this.#putUser({ ...checked, totpEnabled: true, recoveryCodes: codes.map(sha256) });
    await this.#audit('two_factor_change', u.tenantId, `user:${u.userId}`, `${u.email} turned two-factor sign-in on`, { user_id: u.userId, change: 'enabled', recovery_codes: codes.length });
    return { recoveryCodes: codes };
  }

  /** Turns TOTP off; needs a current code (or a recovery code). */
  async disableTotp(userId: string, code: string): Promise<void> {
    const u = await this.#user(userId);
    if (!u.totpEnabled) throw new AccountError('FORGE_ERR_CONFLICT', 'two-factor sign-in is off', 'code');
    await this.#refuseIfLocked(u.email, u, 'totp');
    const checked = await this.#checkSecondFactor(u, code);
    if (!checked) return this.#fail(u.email, u, 'totp', 'wrong code to turn two-factor off');
    await this.#putUser({ ...checked, totpEnabled: false, totpSecret: '', totpLastStep: 0, recoveryCodes: [] });
    await this.#audit('two_factor_change', u.tenantId, `user:${u.userId}`, `${u.email} turned two-factor sign-in off`, { user_id: u.userId, change: 'disabled' });
  }

  /** Keeps an OIDC login's state (PKCE verifier, nonce) for its callback; returns the `state` value. */
  async putOidcState(data: { verifier: string; nonce: string; }): Promise<string> {
    return this.#putToken('oidc', '', OIDC_TTL_MS, JSON.stringify(data));
  }

  /** Takes (once) the OIDC state the callback names. */
  async takeOidcState(state: string): Promise<{ verifier: string; nonce: string }> {
    const t = await this.#liveToken(state, 'oidc');
    if (!t) throw new AccountError('FORGE_ERR_OIDC_REJECTED', 'the sign-in expired or was already used; start again', 'state');
    await this.#useToken(t);
    return JSON.parse(t.data) as { verifier: string; nonce: string };
  }

  /**
   * Signs in a user the OIDC provider vouched for: the user linked to (issuer, subject); else the account of
   * that email when the provider says it is verified (linked now); else a new account in a new tenant.
   */
  async oidcLogin(claims: { issuer: string; subject: string; email?: string; emailVerified?: boolean }): Promise<SignIn> {
    let u = await this.#t.userByOidc(claims.issuer, claims.subject);
    const email = claims.email?.trim().toLowerCase();
    if (!u) {
      if (!email || claims.emailVerified !== true || !EMAIL_RE.test(email)) {
        await this.#audit('sign_in_failed', '', 'anonymous', 'OIDC sign-in refused: no verified email', { issuer: claims.issuer, subject: claims.subject, method: 'oidc' });
        throw new AccountError('FORGE_ERR_OIDC_REJECTED', 'the identity provider did not give a verified email', 'email');
      }
      const existing = await this.#t.user(userIdOf(email));
      if (existing) {
        u = await this.#putUser({ ...existing, oidcIssuer: claims.issuer, oidcSubject: claims.subject, emailVerified: true });
      } else {
        const userId = userIdOf(email);
        const tenantId = `t-${userId.slice(0, 12)}`;
        await this.#o.tenants.create(tenantId, `user:${userId}`, `OIDC signup of ${email}`);
        u = await this.#putUser({
          userId, email, tenantId, roles: [...(this.#o.ownerRoles ?? OWNER_ROLES)], passwordHash: '', emailVerified: true, totpSecret: '', totpEnabled: false,
          totpLastStep: 0, recoveryCodes: [], oidcIssuer: claims.issuer, oidcSubject: claims.subject, createdAt: this.#now(), version: 0,
        });
        await this.#audit('account_created', tenantId, `user:${userId}`, `account ${email} signed up through OIDC`, { user_id: userId, email, method: 'oidc', issuer: claims.issuer });
      }
    }
    await this.#refuseIfLocked(u.email, u, 'oidc');
    return this.#signedIn(u, 'oidc');
  }

  /** A current TOTP code for a secret (tests and the CLI's own checks). */
  static totpCode(secret: string, epochMs: number): Promise<string> {
    return totpGenerate({ secret, epoch: Math.floor(epochMs / 1000) });
  }
}

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Accounts } from '../accounts/index.ts';
import { AccountTables, type GuardrailEventRow } from '../store/index.ts';
import { Client, makeAccountsApp, SECRET_KEY, type AccountsApp } from './helpers/accounts-app.ts';

// Accounts through the HTTP API on the embedded store, with a real SMTP server on loopback: signup and the
// verification mail, sign-in with TOTP and recovery codes, the user's own API keys, CSRF, the lockout (which a
// second Accounts over the same tables, as another process or a restart, also enforces) and the rate limit.

let t: AccountsApp;
const PASSWORD = 'correct horse battery';

beforeAll(async () => {
  t = await makeAccountsApp({ name: 'forge-accounts-api', authRateLimit: 20, lockout: { maxFailures: 3, windowMs: 15 * 60_000 } });
}, 60_000);

afterAll(async () => {
  await t?.close();
});

const uniq = (): string => Math.random().toString(36).slice(2, 10);
type Err = { error: { code: string; field?: string } };

/** Signs up and verifies through the mailed link; returns a client with no session yet. */
async function signedUp(email: string, tenant: string): Promise<Client> {
  const c = new Client(t.base);
  const r = await c.call('POST', '/v1/auth/signup', { email, password: PASSWORD, tenant_id: tenant });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  const mail = await t.smtp.next(email);
  const token = /#token=([A-Za-z0-9_-]+)/.exec(mail.text)?.[1];
  expect(token).toBeDefined();
  expect((await c.call('POST', '/v1/auth/verify', { token })).status).toBe(200);
  return c;
}

async function audit(tenant: string): Promise<GuardrailEventRow[]> {
  return t.store.guardrailEvents({ scope: { tenantId: tenant }, from: 0, to: Date.now() + 60_000 });
}

describe('accounts over the API', () => {
  it('signup mails a link; an unverified account cannot sign in; the link works once', async () => {
    const email = `new-${uniq()}@example.com`;
    const tenant = `t-${uniq()}`;
    const c = new Client(t.base);
    expect((await c.call('POST', '/v1/auth/signup', { email, password: PASSWORD, tenant_id: tenant })).status).toBe(201);
    const mail = await t.smtp.next(email);
    expect(mail.subject).toMatch(/verify/i);
    expect(mail.text).toContain(`${t.base}/account/verify#token=`);
    // Signing in before verifying: refused, and a fresh link goes out.
    const early = await c.call('POST', '/v1/auth/login', { email, password: PASSWORD });
    expect(early.status).toBe(403);
    expect((early.body as Err).error).toMatchObject({ code: 'FORGE_ERR_EMAIL_UNVERIFIED', field: 'email' });
    const again = await t.smtp.next(email);
    const token = /#token=([A-Za-z0-9_-]+)/.exec(again.text)![1];
    expect((await c.call('POST', '/v1/auth/verify', { token })).status).toBe(200);
    const reused = await c.call('POST', '/v1/auth/verify', { token });
    expect(reused.status).toBe(404);
    // The same email, or the same tenant, again: conflicts naming the field.
    const dupe = await c.call('POST', '/v1/auth/signup', { email: email.toUpperCase(), password: PASSWORD, tenant_id: `t-${uniq()}` });
    expect((dupe.body as Err).error).toMatchObject({ code: 'FORGE_ERR_CONFLICT', field: 'email' });
    const taken = await c.call('POST', '/v1/auth/signup', { email: `x-${uniq()}@example.com`, password: PASSWORD, tenant_id: tenant });
    expect((taken.body as Err).error).toMatchObject({ code: 'FORGE_ERR_CONFLICT', field: 'tenant_id' });
    const short = await c.call('POST', '/v1/auth/signup', { email: `y-${uniq()}@example.com`, password: 'short', tenant_id: `t-${uniq()}` });
    expect(short.status).toBe(400);
    expect((short.body as Err).error.field).toBe('password');
    const kinds = (await audit(tenant)).map((e) => e.kind);
    expect(kinds).toEqual(expect.arrayContaining(['account_created', 'email_verified']));
  });

  it('TOTP: set up, turned on with recovery codes; sign-in then needs a code, a code works once, a recovery code once', async () => {
    const email = `totp-${uniq()}@example.com`;
    const tenant = `t-${uniq()}`;
    const c = await signedUp(email, tenant);
    const first = await c.call('POST', '/v1/auth/login', { email, password: PASSWORD });
    expect(first.body).toMatchObject({ status: 'signed_in', user: { email, tenant_id: tenant, roles: ['runner', 'finance', 'auditor'], totp_enabled: false } });
    expect(c.jar.cookies.has('forge_session')).toBe(true);

    const setup = (await c.call('POST', '/v1/auth/2fa/setup')).body as { secret: string; otpauth_uri: string };
    expect(setup.otpauth_uri).toMatch(/^otpauth:\/\/totp\//);
    const wrong = await c.call('POST', '/v1/auth/2fa/enable', { code: '000000' === (await Accounts.totpCode(setup.secret, Date.now())) ? '111111' : '000000' });
    expect((wrong.body as Err).error).toMatchObject({ code: 'FORGE_ERR_TWO_FACTOR_INVALID', field: 'code' });
    const on = await c.call('POST', '/v1/auth/2fa/enable', { code: await Accounts.totpCode(setup.secret, Date.now()) });
    expect(on.status, JSON.stringify(on.body)).toBe(200);
    const codes = (on.body as { recovery_codes: string[] }).recovery_codes;
    expect(codes).toHaveLength(10);

    // At rest: the TOTP secret is sealed (not the base32 text), the password is a scrypt hash.
    const row = await new AccountTables(t.store.client, t.store.database).userByEmail(email);
    expect(row!.totpSecret).not.toContain(setup.secret);
    expect(row!.totpSecret).toMatch(/^v1\./);
    expect(row!.passwordHash).toMatch(/^scrypt\$15\$8\$1\$/);
    expect(row!.recoveryCodes).not.toContain(codes[0]);

    expect((await c.call('POST', '/v1/auth/logout')).status).toBe(204);
    expect((await c.call('GET', '/v1/auth/me')).status).toBe(401);

    // Password alone gives a challenge, not a session.
    const step1 = await c.call('POST', '/v1/auth/login', { email, password: PASSWORD });
    expect(step1.body).toMatchObject({ status: 'second_factor' });
    expect(c.jar.cookies.has('forge_session')).toBe(false);
    const challenge = (step1.body as { challenge: string }).challenge;
    // The code used to turn TOTP on was spent: the same time step is refused (replay).
    const now = Date.now();
    const replay = await c.call('POST', '/v1/auth/login/second-factor', { challenge, code: await Accounts.totpCode(setup.secret, now) });
    const nextStep = await Accounts.totpCode(setup.secret, now + 30_000);
    if (replay.status === 200) {
      // The clock crossed into a new 30 s step between enabling and this call: the code was a fresh one.
      expect(replay.body).toMatchObject({ status: 'signed_in' });
    } else {
      expect((replay.body as Err).error.code).toBe('FORGE_ERR_TWO_FACTOR_INVALID');
      const ok = await c.call('POST', '/v1/auth/login/second-factor', { challenge, code: nextStep });
      expect(ok.body, JSON.stringify(ok.body)).toMatchObject({ status: 'signed_in', user: { totp_enabled: true } });
    }
    expect((await c.call('GET', '/v1/auth/me')).status).toBe(200);
    await c.call('POST', '/v1/auth/logout');

    // A recovery code works once.
    const s2 = (await c.call('POST', '/v1/auth/login', { email, password: PASSWORD })).body as { challenge: string };
    expect((await c.call('POST', '/v1/auth/login/second-factor', { challenge: s2.challenge, code: codes[3] })).status).toBe(200);
    await c.call('POST', '/v1/auth/logout');
    const s3 = (await c.call('POST', '/v1/auth/login', { email, password: PASSWORD })).body as { challenge: string };
    const spent = await c.call('POST', '/v1/auth/login/second-factor', { challenge: s3.challenge, code: codes[3] });
    expect((spent.body as Err).error.code).toBe('FORGE_ERR_TWO_FACTOR_INVALID');

    const events = await audit(tenant);
    const changes = events.filter((e) => e.kind === 'two_factor_change').map((e) => (e.details as { change: string }).change);
    expect(changes).toEqual(expect.arrayContaining(['setup_started', 'enabled', 'recovery_code_used']));
    expect(events.filter((e) => e.kind === 'sign_in').length).toBeGreaterThanOrEqual(3);
    expect(events.some((e) => e.kind === 'sign_in_failed' && e.actor.startsWith('user:'))).toBe(true);
    // Nothing secret in the log.
    const logged = JSON.stringify(events);
    expect(logged).not.toContain(setup.secret);
    expect(logged).not.toContain(codes[0]);
    expect(logged).not.toContain(PASSWORD);
  });

  it('users create and revoke their tenant\'s API keys with a session; the keys work; others\' keys stay out of reach', async () => {
    const email = `keys-${uniq()}@example.com`;
    const tenant = `t-${uniq()}`;
    const c = await signedUp(email, tenant);
    await c.call('POST', '/v1/auth/login', { email, password: PASSWORD });
    const made = await c.call('POST', '/v1/auth/keys', { name: 'ci runner', roles: ['runner'] });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    const { id, key } = made.body as { id: string; key: string };
    const listed = (await c.call('GET', '/v1/auth/keys')).body as { keys: Array<{ id: string; name: string }> };
    expect(listed.keys.map((k) => k.id)).toEqual([id]);
    // The key is the tenant's: it is bound to it with the role asked for.
    expect(t.keys.verify(key)).toMatchObject({ tenantId: tenant, roles: ['runner'] });
    // An API key does not manage accounts.
    const byKey = await fetch(`${t.base}/v1/auth/keys`, { headers: { authorization: `Bearer ${key}` } });
    expect(byKey.status).toBe(401);
    // Another tenant's key: as unknown as a missing one.
    const foreign = await t.keys.create({ name: 'other', roles: ['runner'], tenantId: 'acme' });
    expect((await c.call('DELETE', `/v1/auth/keys/${foreign.id}`)).status).toBe(404);
    expect(t.keys.verify(foreign.key)).toBeDefined();
    expect((await c.call('DELETE', `/v1/auth/keys/${id}`)).status).toBe(204);
    expect(t.keys.verify(key)).toBeUndefined();
    const events = await audit(tenant);
    expect(events.filter((e) => e.kind === 'key_created' || e.kind === 'key_revoked').map((e) => [e.kind, e.actor])).toEqual([
      ['key_created', expect.stringMatching(/^user:/)],
      ['key_revoked', expect.stringMatching(/^user:/)],
    ]);
  });

  it('CSRF: changes made with a session cookie, and sign-ins, are refused without the matching token', async () => {
    const email = `csrf-${uniq()}@example.com`;
    const c = await signedUp(email, `t-${uniq()}`);
    // A sign-in without the token (login CSRF).
    const noToken = await c.call('POST', '/v1/auth/login', { email, password: PASSWORD }, { csrf: false });
    expect(noToken.status).toBe(403);
    expect((noToken.body as Err).error).toMatchObject({ code: 'FORGE_ERR_CSRF', field: 'x-csrf-token' });
    await c.call('POST', '/v1/auth/login', { email, password: PASSWORD });
    // A forged cross-site request carries the cookies, not the token; nor does a token from another browser work.
    const forged = await c.call('POST', '/v1/auth/keys', { name: 'evil', roles: ['admin'] }, { csrf: false });
    expect((forged.body as Err).error.code).toBe('FORGE_ERR_CSRF');
    const otherToken = await new Client(t.base).token();
    const mixed = await c.call('POST', '/v1/auth/keys', { name: 'evil', roles: ['admin'] }, { csrf: otherToken });
    expect((mixed.body as Err).error.code).toBe('FORGE_ERR_CSRF');
    expect(((await c.call('GET', '/v1/auth/keys')).body as { keys: unknown[] }).keys).toEqual([]);
    // With its own token it goes through; a role the user does not hold is refused all the same.
    expect((await c.call('POST', '/v1/auth/keys', { name: 'fine', roles: ['runner'] })).status).toBe(201);
    const above = await c.call('POST', '/v1/auth/keys', { name: 'above', roles: ['admin'] });
    expect((above.body as Err).error).toMatchObject({ code: 'FORGE_ERR_FORBIDDEN_ROLE', field: 'roles' });
  });

  it('brute force: the email locks after repeated failures, for the right password too, in every process', async () => {
    const email = `brute-${uniq()}@example.com`;
    const tenant = `t-${uniq()}`;
    const c = await signedUp(email, tenant);
    for (let i = 0; i < 3; i++) {
      const r = await c.call('POST', '/v1/auth/login', { email, password: `guess-number-${i}` });
      expect((r.body as Err).error).toMatchObject({ code: 'FORGE_ERR_INVALID_CREDENTIALS', field: 'password' });
    }
    const locked = await c.call('POST', '/v1/auth/login', { email, password: PASSWORD });
    expect(locked.status).toBe(429);
    expect((locked.body as Err).error).toMatchObject({ code: 'FORGE_ERR_ACCOUNT_LOCKED', field: 'email' });
    expect(c.jar.cookies.has('forge_session')).toBe(false);
    // Accounts over the same tables, as another process (or this one after a restart) has them.
    const process2 = (now = Date.now): Accounts =>
      new Accounts({
        tables: new AccountTables(t.store.client, t.store.database),
        audit: async () => {},
        mailer: { send: async () => {} },
        tenants: { create: async () => true },
        secretKey: SECRET_KEY,
        publicUrl: t.base,
        lockout: { maxFailures: 3, windowMs: 15 * 60_000 },
        now,
      });
    const other = process2();
    await expect(other.login({ email, password: PASSWORD })).rejects.toMatchObject({ code: 'FORGE_ERR_ACCOUNT_LOCKED' });
    // After the window, the right password works again.
    const later = process2(() => Date.now() + 16 * 60_000);
    await expect(later.login({ email, password: PASSWORD })).resolves.toMatchObject({ kind: 'session' });
    const failed = (await audit(tenant)).filter((e) => e.kind === 'sign_in_failed');
    expect(failed.map((e) => (e.details as { why: string }).why)).toEqual(expect.arrayContaining(['wrong password', 'locked']));
  });

  it('rate limit: a client hammering a sign-in route gets 429 FORGE_ERR_RATE_LIMITED', async () => {
    const c = new Client(t.base);
    const statuses: number[] = [];
    let last: Err | undefined;
    for (let i = 0; i < 24; i++) {
      const r = await c.call('POST', '/v1/auth/verify', { token: `x${'y'.repeat(30)}${i}` });
      statuses.push(r.status);
      last = r.body as Err;
    }
    expect(statuses.slice(0, 3).every((s) => s === 404)).toBe(true);
    expect(statuses.at(-1)).toBe(429);
    expect(last!.error).toMatchObject({ code: 'FORGE_ERR_RATE_LIMITED' });
  });
});

describe('accounts secrets and config (no services)', () => {
  it('passwords are scrypt hashes that only the password opens; sealed secrets open only for their owner and key', async () => {
    const { hashPassword, verifyPassword, seal, unseal, sealConfigSecret, openConfigSecret } = await import('../accounts/secrets.ts');
    const h = await hashPassword('correct horse battery');
    expect(h).not.toContain('correct');
    expect(await verifyPassword('correct horse battery', h)).toBe(true);
    expect(await verifyPassword('correct horse batterY', h)).toBe(false);
    expect(await verifyPassword('x', 'scrypt$99$8$1$AA$AA')).toBe(false);
    expect(await hashPassword('same')).not.toBe(await hashPassword('same')); // salted
    const sealed = seal(SECRET_KEY, 'JBSWY3DPEHPK3PXP', 'user-a');
    expect(unseal(SECRET_KEY, sealed, 'user-a')).toBe('JBSWY3DPEHPK3PXP');
    expect(() => unseal(SECRET_KEY, sealed, 'user-b')).toThrow(); // copied onto another user
    expect(() => unseal(Buffer.alloc(32, 9), sealed, 'user-a')).toThrow(); // another key
    const client = sealConfigSecret(SECRET_KEY, 'oidc-client-secret');
    expect(client).toMatch(/^v1\./);
    expect(client).not.toContain('oidc-client-secret');
    expect(openConfigSecret(SECRET_KEY, client)).toBe('oidc-client-secret');
    expect(openConfigSecret(SECRET_KEY, 'plain-secret')).toBe('plain-secret');
  });

  it('the config names the missing variable when accounts or SSO are half set', async () => {
    const { loadConfig } = await import('../api/index.ts');
    const key = Buffer.alloc(32, 1).toString('base64');
    expect(() => loadConfig({ FORGE_ACCOUNTS_SECRET_KEY: key })).toThrow(/^FORGE_SMTP_URL/);
    expect(() => loadConfig({ FORGE_ACCOUNTS_SECRET_KEY: 'short' })).toThrow(/^FORGE_ACCOUNTS_SECRET_KEY/);
    expect(() => loadConfig({ FORGE_ACCOUNTS_SECRET_KEY: key, FORGE_SMTP_URL: 'smtp://127.0.0.1:25', FORGE_OIDC_ISSUER: 'https://idp.example.com' })).toThrow(/^FORGE_OIDC_CLIENT_ID/);
    const ok = loadConfig({ FORGE_ACCOUNTS_SECRET_KEY: key, FORGE_SMTP_URL: 'smtp://127.0.0.1:25' });
    expect(ok).toMatchObject({ FORGE_COOKIE_SECURE: true, FORGE_AUTH_RATE_LIMIT: 20 });
  });
});

describe('the sign-in rate limit across processes', () => {
  it('two API processes on one Redis count one limit', async () => {
    const { startRedis, freshPrefix } = await import('./helpers/redis.ts');
    const { Redis } = await import('ioredis');
    const server = await startRedis();
    const prefix = freshPrefix('rl');
    const clients = [new Redis(server.url), new Redis(server.url)];
    const apps = await Promise.all(clients.map((redis, i) => makeAccountsApp({ name: `forge-accounts-rl-${i}`, authRateLimit: 5, rateLimitRedis: { redis, prefix }, store: t.store })));
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) {
        const c = new Client(apps[i % 2]!.base);
        statuses.push((await c.call('POST', '/v1/auth/verify', { token: `z${'q'.repeat(30)}${i}` })).status);
      }
      // Five answers in all (three here, two there), then the sixth, on either process, is refused.
      expect(statuses).toEqual([404, 404, 404, 404, 404, 429]);
    } finally {
      for (const a of apps) await a.close();
      for (const r of clients) r.disconnect();
      await server.stop();
    }
  }, 60_000);
});

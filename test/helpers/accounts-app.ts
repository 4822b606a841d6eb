import type { AddressInfo } from 'node:net';
import { simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import { Accounts, OidcSignIn, SmtpMailer } from '../../accounts/index.ts';
import { KeyStore } from '../../api/auth.ts';
import { TenantRegistry } from '../../api/tenants.ts';
import type { FastifyPluginAsync } from 'fastify';
import { openStore, AccountTables, TenantTable, type Store } from '../../store/index.ts';
import { makeTestApi, type TestApi } from './api.ts';
import { tempDataDir } from './store-events.ts';

export interface Mail {
  to: string;
  subject: string;
  text: string;
}

/** A real SMTP server on loopback (no TLS, no auth) that parses what it receives with mailparser. */
export async function startSmtp(): Promise<{ url: string; inbox: Mail[]; next(to: string): Promise<Mail>; close(): Promise<void> }> {
  const inbox: Mail[] = [];
  const waiters: Array<() => void> = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, _session, cb) {
      simpleParser(stream)
        .then((m) => {
          const to = Array.isArray(m.to) ? m.to[0]?.text : m.to?.text;
          inbox.push({ to: to ?? '', subject: m.subject ?? '', text: m.text ?? '' });
          for (const w of waiters.splice(0)) w();
          cb();
        })
        .catch((e: Error) => cb(e));
    },
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.server.address() as AddressInfo).port;
  return {
    url: `smtp://127.0.0.1:${port}`,
    inbox,
    async next(to: string): Promise<Mail> {
      for (let i = 0; i < 200; i++) {
        const hit = inbox.findLast((m) => m.to === to);
        if (hit) {
          inbox.splice(inbox.indexOf(hit), 1);
          return hit;
        }
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 100).unref();
        });
      }
      throw new Error(`no mail to ${to}`);
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

export interface AccountsApp {
  api: TestApi;
  store: Store;
  keys: KeyStore;
  accounts: Accounts;
  smtp: Awaited<ReturnType<typeof startSmtp>>;
  /** Where the app listens (after listen()). */
  base: string;
  close(): Promise<void>;
}

export const SECRET_KEY = Buffer.alloc(32, 7);

/**
 * The whole API app with accounts on the embedded store: real API keys (api_keys table), tenants, a real SMTP
 * server for the verification mail, optional OIDC. It listens on loopback (the browser and the OIDC provider
 * need a real address); `publicUrl` is that address.
 */
export async function makeAccountsApp(opts: { name: string; port?: number; oidc?: (base: string) => OidcSignIn; authRateLimit?: number; lockout?: { maxFailures: number; windowMs: number }; rateLimitRedis?: { redis: unknown; prefix: string }; store?: Store; plugins?: (store: Store) => FastifyPluginAsync[] }): Promise<AccountsApp> {
  // One embedded store per process (chdb): a second app in the same test shares the first one's.
  const tmp = opts.store ? undefined : tempDataDir(opts.name);
  const store = opts.store ?? (await openStore({ dataDir: tmp!.dir }));
  const keys = await KeyStore.open(store, { refreshMs: 60_000 });
  const tenants = new TenantRegistry({ fromBands: () => ['acme'], fromKeys: () => keys.list().map((k) => k.tenantId), table: new TenantTable(store.client, store.database), now: Date.now });
  const smtp = await startSmtp();
  const mailer = new SmtpMailer(smtp.url, 'Forge <forge@localhost>');
  // The public URL is known only once the app listens: the accounts read it through this holder.
  const where = { base: '' };
  const accounts = new Accounts({
    tables: new AccountTables(store.client, store.database),
    audit: (e) => store.appendGuardrailEvents(e),
    mailer: { send: (m) => mailer.send(m) },
    tenants,
    secretKey: SECRET_KEY,
    get publicUrl() {
      return where.base;
    },
    ...(opts.lockout ? { lockout: opts.lockout } : {}),
  });
  const port = opts.port ?? (await freePort());
  where.base = `http://127.0.0.1:${port}`;
  const oidc = opts.oidc?.(where.base);
  const api = await makeTestApi({
    parts: {
      keys,
      tenants,
      accounts: { accounts, ...(oidc ? { oidc } : {}), cookieSecure: false, ...(opts.authRateLimit ? { authRateLimit: opts.authRateLimit } : {}), ...(opts.rateLimitRedis ? { rateLimitRedis: opts.rateLimitRedis } : {}) },
      ...(opts.plugins ? { plugins: opts.plugins(store) } : {}),
    },
  });
  await api.app.listen({ host: '127.0.0.1', port });
  return {
    api,
    store,
    keys,
    accounts,
    smtp,
    base: where.base,
    async close() {
      keys.close();
      mailer.close();
      await api.close();
      await smtp.close();
      if (tmp) {
        await store.close();
        tmp.remove();
      }
    },
  };
}

export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/** A cookie jar for fetch: keeps Set-Cookie values and sends them back. */
export class Jar {
  readonly cookies = new Map<string, string>();
  take(res: Response): void {
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair!.indexOf('=');
      const name = pair!.slice(0, i);
      const value = pair!.slice(i + 1);
      if (value === '' || /max-age=0|expires=Thu, 01 Jan 1970/i.test(c)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }
  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

/** A browser-like client of the API: cookies, and the CSRF token on changes. */
export class Client {
  readonly jar = new Jar();
  csrf = '';
  constructor(readonly base: string) {}

  async token(): Promise<string> {
    if (!this.csrf) this.csrf = ((await this.call('GET', '/v1/auth/csrf')).body as { token: string }).token;
    return this.csrf;
  }

  async call(method: string, path: string, body?: unknown, opts: { csrf?: string | false; headers?: Record<string, string> } = {}): Promise<{ status: number; body: unknown; headers: Headers }> {
    const headers: Record<string, string> = { ...opts.headers };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (method !== 'GET' && opts.csrf !== false) headers['x-csrf-token'] = opts.csrf ?? (await this.token());
    // After the token: fetching it may have set the CSRF cookie.
    if (this.jar.cookies.size > 0) headers.cookie = this.jar.header();
    const res = await fetch(`${this.base}${path}`, { method, headers, redirect: 'manual', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    this.jar.take(res);
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, body: parsed, headers: res.headers };
  }
}

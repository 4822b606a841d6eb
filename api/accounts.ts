import { Accounts, OidcSignIn, openConfigSecret, parseSecretKey, SmtpMailer } from '../accounts/index.ts';
import { FastFailConnection, quitRedis } from '../guard/index.ts';
import { AccountTables, type Store } from '../store/index.ts';
import type { AccountParts } from './app.ts';
import type { ForgeConfig } from './config.ts';
import type { TenantRegistry } from './tenants.ts';

/**
 * The web UI accounts of `forge start`, from the config: off unless FORGE_ACCOUNTS_SECRET_KEY is set; SSO on
 * with FORGE_OIDC_ISSUER. `close` ends the SMTP transport.
 */
export function accountPartsFromConfig(config: ForgeConfig, deps: { store: Store; tenants: TenantRegistry; now: () => number; onError: (e: unknown, where: string) => void }): { parts: AccountParts; close(): Promise<void> } | undefined {
  if (!config.FORGE_ACCOUNTS_SECRET_KEY || !config.FORGE_SMTP_URL) return undefined;
  const key = parseSecretKey(config.FORGE_ACCOUNTS_SECRET_KEY, 'FORGE_ACCOUNTS_SECRET_KEY');
  const publicUrl = (config.FORGE_PUBLIC_URL ?? `http://${config.FORGE_HOST}:${config.FORGE_PORT}`).replace(/\/$/, '');
  const mailer = new SmtpMailer(config.FORGE_SMTP_URL, config.FORGE_MAIL_FROM);
  const accounts = new Accounts({
    tables: new AccountTables(deps.store.client, deps.store.database),
    audit: (events) => deps.store.appendGuardrailEvents(events),
    mailer,
    tenants: deps.tenants,
    secretKey: key,
    publicUrl,
    now: deps.now,
  });
  let oidc: OidcSignIn | undefined;
  if (config.FORGE_OIDC_ISSUER && config.FORGE_OIDC_CLIENT_ID && config.FORGE_OIDC_CLIENT_SECRET) {
    const issuer = new URL(config.FORGE_OIDC_ISSUER);
    oidc = new OidcSignIn({
      issuer: config.FORGE_OIDC_ISSUER,
      clientId: config.FORGE_OIDC_CLIENT_ID,
      clientSecret: openConfigSecret(key, config.FORGE_OIDC_CLIENT_SECRET),
      redirectUri: `${publicUrl}/v1/auth/oidc/callback`,
      // Plain http only to a provider on this machine (development, tests).
      allowHttp: issuer.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(issuer.hostname),
    });
  }
  // With Redis, the sign-in rate limit is counted there: one limit across every API process.
  const redis = config.FORGE_REDIS_URL ? new FastFailConnection(config.FORGE_REDIS_URL, { commandTimeoutMs: config.FORGE_LEDGER_TIMEOUT_MS, name: 'forge-auth-rate-limit', onError: (e) => deps.onError(e, 'auth rate limit') }) : undefined;
  return {
    parts: {
      accounts,
      ...(oidc ? { oidc } : {}),
      ...(redis ? { rateLimitRedis: { redis: redis.redis, prefix: config.FORGE_REDIS_PREFIX } } : {}),
      cookieSecure: config.FORGE_COOKIE_SECURE,
      authRateLimit: config.FORGE_AUTH_RATE_LIMIT,
    },
    close: async () => {
      mailer.close();
      if (redis) await quitRedis(redis.redis);
    },
  };
}

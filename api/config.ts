import { accessSync, constants, statSync } from 'node:fs';
import { z } from 'zod';
import { BILLING_ENV, billingConfigFrom, type BillingConfig } from '../billing/index.ts';

/** Raised when the process environment is wrong: the message names the variable. */
export class ConfigError extends Error {
  readonly code = 'FORGE_ERR_CONFIG';
}

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
/** A file the process reads at start: a missing one stops the start naming the variable, not with a bare ENOENT. */
const readableFile = z.string().superRefine((path, ctx) => {
  try {
    if (!statSync(path).isFile()) ctx.addIssue({ code: 'custom', message: `"${path}" is not a file` });
    else accessSync(path, constants.R_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    ctx.addIssue({ code: 'custom', message: code === 'ENOENT' ? `no such file "${path}"` : `cannot read "${path}" (${code ?? (e as Error).message})` });
  }
});
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

// The one schema of the `forge start` process: the API's own variables and billing's, parsed once at start.
const envSchema = z.object({
  ...BILLING_ENV.shape,
  FORGE_HOST: z.string().default('127.0.0.1'),
  FORGE_PORT: int(0, 65535).default(8080),
  FORGE_DATA_DIR: z.string().min(1).default('./data'),
  FORGE_CLICKHOUSE_URL: z.string().url().optional(),
  FORGE_CLICKHOUSE_USER: z.string().optional(),
  FORGE_CLICKHOUSE_PASSWORD: z.string().optional(),
  FORGE_CLICKHOUSE_DATABASE: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional(),
  /** A cluster name: the DDL goes ON CLUSTER with ReplicatedMergeTree + Distributed tables (needs FORGE_CLICKHOUSE_URL). */
  FORGE_CLICKHOUSE_CLUSTER: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/).optional(),
  // prefault: the default path is checked too (it is relative to the working directory).
  FORGE_BUDGETS_FILE: readableFile.prefault('config/pilot-budgets.yaml'),
  FORGE_PRICING_FILE: readableFile.optional(),
  FORGE_ALERTS_FILE: readableFile.optional(),
  FORGE_REDIS_URL: z.string().url().optional(),
  /** Prefix of every Redis key and channel (one namespace per deployment). */
  FORGE_REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9:._-]{1,64}$/).default('forge:'),
  /** When shared state (Redis) is unreachable: deny admissions (closed, the default) or allow them (open). */
  FORGE_ADMISSIONS_ON_LEDGER_FAILURE: z.enum(['closed', 'open']).default('closed'),
  /** A live-ledger (Redis) command not answered within this is a ledger failure (see the line above). */
  FORGE_LEDGER_TIMEOUT_MS: int(50, 60_000).default(2_000),
  FORGE_RESERVATION_TTL_MS: int(1_000, 86_400_000).default(15 * 60_000),
  /** Event ids each process remembers for exactly-once live totals (the store decides beyond them). */
  FORGE_MAX_TRACKED_EVENTS: int(1_000, 100_000_000).default(1_000_000),
  FORGE_ROLLUP_INTERVAL_MS: int(1_000, 86_400_000).default(3_600_000),
  /**
   * Execution spikes: a tenant whose admissions in the last window run at FORGE_SPIKE_FACTOR x its trailing
   * rate (counted in buckets of FORGE_SPIKE_BUCKET_MS; window and trailing period whole numbers of buckets)
   * has its intake paused and on-call paged, once the window holds FORGE_SPIKE_MIN_COUNT admissions, the
   * trailing period FORGE_SPIKE_MIN_TRAILING and the process has watched the tenant FORGE_SPIKE_MIN_HISTORY_MS.
   */
  FORGE_SPIKE_DETECTION: bool.default(true),
  FORGE_SPIKE_FACTOR: int(2, 1000).default(5),
  FORGE_SPIKE_BUCKET_MS: int(1_000, 3_600_000).default(60_000),
  FORGE_SPIKE_WINDOW_MS: int(1_000, 86_400_000).default(5 * 60_000),
  FORGE_SPIKE_TRAILING_MS: int(1_000, 7 * 86_400_000).default(60 * 60_000),
  FORGE_SPIKE_MIN_COUNT: int(1, 100_000_000).default(50),
  FORGE_SPIKE_MIN_TRAILING: int(1, 100_000_000).default(10),
  FORGE_SPIKE_MIN_HISTORY_MS: int(0, 7 * 86_400_000).default(30 * 60_000),
  /** An automatic pause ends by itself after this long; 0 (the default): only an operator resumes. */
  FORGE_SPIKE_COOLDOWN_MS: int(0, 7 * 86_400_000).default(0),
  FORGE_FLUSH_INTERVAL_MS: int(10, 60_000).default(200),
  /** /metrics without a key; tenant-labelled series are then left out. Default: a key is needed. */
  FORGE_METRICS_PUBLIC: bool.default(false),
  FORGE_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  FORGE_BODY_LIMIT_BYTES: int(1024, 64 * 1024 * 1024).default(5 * 1024 * 1024),
  /** Eval suites POST /v1/eval/runs knows by name: the shipped directory, plus this one's *.yaml (a name here wins). */
  FORGE_EVAL_SUITES_DIR: z.string().min(1).optional(),
  /** Eval runs started over the API that run at once in this process; one more is refused (429). */
  FORGE_EVAL_MAX_RUNS: int(1, 64).default(2),
  /** Web UI accounts (signup, 2FA, sessions, SSO) are on when this is set: base64 of 32 bytes that seals TOTP secrets. */
  FORGE_ACCOUNTS_SECRET_KEY: z.string().regex(/^[A-Za-z0-9+/]{43}=$/, 'must be base64 of 32 random bytes (openssl rand -base64 32)').optional(),
  /** Where users reach the web UI (links in email, the OIDC redirect); default http://<FORGE_HOST>:<FORGE_PORT>. */
  FORGE_PUBLIC_URL: z.string().url().optional(),
  /** SMTP server for account email (smtp://user:pass@host:587 or smtps://...); required with accounts. */
  FORGE_SMTP_URL: z.string().regex(/^smtps?:\/\//, 'must be an smtp:// or smtps:// URL').optional(),
  FORGE_MAIL_FROM: z.string().min(3).max(200).default('Forge <forge@localhost>'),
  /** OpenID Connect single sign-on: the provider's issuer URL, and this client's id and secret. */
  FORGE_OIDC_ISSUER: z.string().url().optional(),
  FORGE_OIDC_CLIENT_ID: z.string().min(1).max(200).optional(),
  /** The client secret, plain, or sealed with FORGE_ACCOUNTS_SECRET_KEY (`forge accounts seal`, a `v1.` value). */
  FORGE_OIDC_CLIENT_SECRET: z.string().min(1).max(2000).optional(),
  /** Session and CSRF cookies only over https (default true; false only for plain-http development). */
  FORGE_COOKIE_SECURE: bool.default(true),
  /** Requests per minute and client address on each sign-in route. */
  FORGE_AUTH_RATE_LIMIT: int(1, 10_000).default(20),
});

export type ForgeConfig = z.output<typeof envSchema> & { billing: BillingConfig };

/** Parses the environment once, at start; fails fast naming the variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): ForgeConfig {
  const picked = Object.fromEntries(Object.entries(env).filter(([k, v]) => (k.startsWith('FORGE_') || k.startsWith('STRIPE_')) && v !== ''));
  const r = envSchema.safeParse(picked);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new ConfigError(`${String(i.path[0])}: ${i.message}`);
  }
  const d = r.data;
  if (d.FORGE_ACCOUNTS_SECRET_KEY && !d.FORGE_SMTP_URL) throw new ConfigError('FORGE_SMTP_URL: required with FORGE_ACCOUNTS_SECRET_KEY (account email)');
  for (const v of ['FORGE_SPIKE_WINDOW_MS', 'FORGE_SPIKE_TRAILING_MS'] as const) {
    if (d[v] % d.FORGE_SPIKE_BUCKET_MS !== 0) throw new ConfigError(`${v}: must be a whole number of FORGE_SPIKE_BUCKET_MS (${d.FORGE_SPIKE_BUCKET_MS} ms)`);
  }
  if (d.FORGE_OIDC_ISSUER && !d.FORGE_ACCOUNTS_SECRET_KEY) throw new ConfigError('FORGE_ACCOUNTS_SECRET_KEY: required with FORGE_OIDC_ISSUER (single sign-on opens accounts)');
  if (d.FORGE_OIDC_ISSUER && !d.FORGE_OIDC_CLIENT_ID) throw new ConfigError('FORGE_OIDC_CLIENT_ID: required with FORGE_OIDC_ISSUER');
  if (d.FORGE_OIDC_ISSUER && !d.FORGE_OIDC_CLIENT_SECRET) throw new ConfigError('FORGE_OIDC_CLIENT_SECRET: required with FORGE_OIDC_ISSUER');
  // Rules across billing's variables (a half-set Stripe or vault) fail here too, naming the variable.
  return { ...d, billing: billingConfigFrom(d) };
}

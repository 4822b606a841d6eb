import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { AlertsConfigError } from './errors.ts';
import { Secret } from './secret.ts';

export const PAGERDUTY_EVENTS_URL = 'https://events.pagerduty.com/v2/enqueue';

/** Route keys: the guardrail states that alert, and the other alert kinds. */
export const ROUTE_KEYS = ['WARNING', 'HARD_STOP', 'EMERGENCY_STOP', 'hung_task', 'component_failure', 'user_spend', 'anomaly', 'intake_paused', 'key_health'] as const;
export type RouteKey = (typeof ROUTE_KEYS)[number];

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  maxAttempts: number;
  /** Delay before the first retry, ms; doubles each retry. */
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** Per-request timeout, ms. */
  timeoutMs: number;
}

export interface RateLimit {
  /** Burst size, requests. */
  burst: number;
  /** Sustained rate, requests per minute. */
  perMinute: number;
  /** Longest an alert waits for a token before it is recorded as rate_limited, ms. */
  maxWaitMs: number;
}

interface DestinationBase {
  name: string;
  retry: RetryPolicy;
  rateLimit: RateLimit;
}
export interface SlackDestination extends DestinationBase {
  type: 'slack';
  /** Slack incoming webhook URL (secret). */
  webhookUrl: Secret;
}
export interface PagerDutyDestination extends DestinationBase {
  type: 'pagerduty';
  /** Events API v2 endpoint; not secret. */
  url: string;
  /** Integration routing key (secret). */
  routingKey: Secret;
}
export interface EmailDestination extends DestinationBase {
  type: 'email';
  /** SMTP relay host and port; not secret. */
  host: string;
  port: number;
  /** TLS from the first byte (port 465). */
  secure: boolean;
  /** Refuse to send unless STARTTLS succeeds. */
  requireTLS: boolean;
  /** Never try STARTTLS (loopback relays only). */
  ignoreTLS: boolean;
  username?: string;
  /** SMTP password (secret). */
  password?: Secret;
  /** From address. */
  from: string;
  /** Default recipients (on-call lists); spend alerts name their user instead. */
  to: readonly string[];
}
export interface WebhookDestination extends DestinationBase {
  type: 'webhook';
  /** Any HTTP endpoint taking JSON (secret: such URLs often embed a token). */
  url: Secret;
}
export type DestinationConfig = SlackDestination | PagerDutyDestination | EmailDestination | WebhookDestination;

/** Parsed, validated alerts configuration. Secrets are `Secret`s and print redacted. */
export interface AlertsConfig {
  /** PagerDuty `payload.source`. */
  source: string;
  /** Link templates; `{scope}` is replaced by the URL-encoded scope key. */
  links: { dashboardUrl: string; acknowledgeUrl: string };
  /** Re-notify interval for unacknowledged warnings, ms. */
  renotifyIntervalMs: number;
  /** How often the re-notify loop looks for due warnings, ms. */
  renotifyCheckMs: number;
  destinations: ReadonlyMap<string, DestinationConfig>;
  routes: Readonly<Record<RouteKey, readonly string[]>>;
  secrets: readonly Secret[];
}

const ENV_REF = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/;
const secretRef = z
  .string()
  .regex(ENV_REF, 'must be an environment variable reference such as ${FORGE_SLACK_WEBHOOK_URL}; secrets are never written in config');

const retrySchema = z
  .object({
    maxAttempts: z.number().int().min(1).max(20).default(6),
    initialBackoffMs: z.number().int().min(1).max(600_000).default(500),
    maxBackoffMs: z.number().int().min(1).max(3_600_000).default(60_000),
    timeoutMs: z.number().int().min(100).max(120_000).default(10_000),
  })
  .strict();

const rateLimitSchema = z
  .object({
    burst: z.number().int().min(1).max(10_000).default(10),
    perMinute: z.number().positive().max(100_000).default(30),
    maxWaitMs: z.number().int().min(0).max(3_600_000).default(120_000),
  })
  .strict();

const slackSchema = z
  .object({
    type: z.literal('slack'),
    webhookUrl: secretRef,
    retry: retrySchema.optional(),
    rateLimit: rateLimitSchema.optional(),
  })
  .strict();

const pagerDutySchema = z
  .object({
    type: z.literal('pagerduty'),
    routingKey: secretRef,
    url: z.string().min(1).default(PAGERDUTY_EVENTS_URL),
    retry: retrySchema.optional(),
    rateLimit: rateLimitSchema.optional(),
  })
  .strict();

const emailAddress = z.string().regex(/^[^\s@<>,;"]{1,64}@[^\s@<>,;"]{1,255}$/, 'is not an email address');
const emailSchema = z
  .object({
    type: z.literal('email'),
    host: z.string().min(1).max(255),
    port: z.number().int().min(1).max(65_535).default(587),
    secure: z.boolean().default(false),
    requireTLS: z.boolean().default(false),
    ignoreTLS: z.boolean().default(false),
    username: z.string().min(1).max(255).optional(),
    password: secretRef.optional(),
    from: z.string().min(3).max(320),
    // Addresses are checked after `${VAR}` references are read.
    to: z.array(z.string().min(1).max(320)).max(100).default([]),
    retry: retrySchema.optional(),
    rateLimit: rateLimitSchema.optional(),
  })
  .strict();

const webhookSchema = z
  .object({
    type: z.literal('webhook'),
    url: secretRef,
    retry: retrySchema.optional(),
    rateLimit: rateLimitSchema.optional(),
  })
  .strict();

const destName = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'destination names use letters, digits, _ . - (max 64)');

const rawSchema = z
  .object({
    source: z.string().min(1).max(255).default('forge'),
    links: z
      .object({
        dashboardUrl: z.string().min(1),
        acknowledgeUrl: z.string().min(1),
      })
      .strict(),
    renotify: z
      .object({
        intervalSeconds: z.number().min(0.01).max(7 * 86_400).default(1800),
        checkEverySeconds: z.number().min(0.005).max(3600).optional(),
      })
      .strict()
      .default({ intervalSeconds: 1800 }),
    delivery: retrySchema.default({ maxAttempts: 6, initialBackoffMs: 500, maxBackoffMs: 60_000, timeoutMs: 10_000 }),
    rateLimit: rateLimitSchema.default({ burst: 10, perMinute: 30, maxWaitMs: 120_000 }),
    destinations: z.record(destName, z.discriminatedUnion('type', [slackSchema, pagerDutySchema, emailSchema, webhookSchema])),
    routes: z
      .object({
        WARNING: z.array(destName).default([]),
        HARD_STOP: z.array(destName).default([]),
        EMERGENCY_STOP: z.array(destName).default([]),
        hung_task: z.array(destName).default([]),
        component_failure: z.array(destName).default([]),
        user_spend: z.array(destName).default([]),
        anomaly: z.array(destName).default([]),
        /** An execution spike paused a tenant's intake: on-call acts on it like a hard stop. */
        intake_paused: z.array(destName).default([]),
        /** A user's provider key is failing (BYOK): the user's email and the team's Slack. */
        key_health: z.array(destName).default([]),
      })
      .strict(),
  })
  .strict();

export type Env = Readonly<Record<string, string | undefined>>;

/** Parses an alerts config object (as read from YAML); `${VAR}` references are read from `env`. */
export function parseAlertsConfig(raw: unknown, env: Env = process.env): AlertsConfig {
  const r = rawSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    const field = issue ? issue.path.map(String).join('.') || '(root)' : '(root)';
    throw new AlertsConfigError(field, issue?.message ?? 'invalid');
  }
  const c = r.data;

  const secrets: Secret[] = [];
  const readSecret = (field: string, ref: string): Secret => {
    const name = ENV_REF.exec(ref)?.[1] ?? '';
    const v = env[name];
    if (v === undefined || v.trim() === '') {
      throw new AlertsConfigError(field, `environment variable ${name} is not set`);
    }
    const s = new Secret(v.trim(), `env:${name}`);
    secrets.push(s);
    return s;
  };
  // Plain strings may also be `${VAR}` (e.g. base URLs that differ per deployment).
  const plain = (field: string, v: string): string => {
    const m = ENV_REF.exec(v);
    if (!m) return v;
    const val = env[m[1] ?? ''];
    if (val === undefined || val.trim() === '') throw new AlertsConfigError(field, `environment variable ${m[1]} is not set`);
    return val.trim();
  };
  const httpUrl = (field: string, v: string, shown: boolean): void => {
    let ok = false;
    try {
      const u = new URL(v.replace(/\{scope\}/g, 'x'));
      ok = u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      ok = false;
    }
    // A secret URL is never echoed back, not even in an error.
    if (!ok) throw new AlertsConfigError(field, shown ? `"${v}" is not an http(s) URL` : 'is not an http(s) URL');
  };

  const links = {
    dashboardUrl: plain('links.dashboardUrl', c.links.dashboardUrl),
    acknowledgeUrl: plain('links.acknowledgeUrl', c.links.acknowledgeUrl),
  };
  httpUrl('links.dashboardUrl', links.dashboardUrl, true);
  httpUrl('links.acknowledgeUrl', links.acknowledgeUrl, true);

  const destinations = new Map<string, DestinationConfig>();
  for (const [name, d] of Object.entries(c.destinations)) {
    const base = { name, retry: d.retry ?? c.delivery, rateLimit: d.rateLimit ?? c.rateLimit };
    if (base.retry.maxBackoffMs < base.retry.initialBackoffMs) {
      throw new AlertsConfigError(`destinations.${name}.retry.maxBackoffMs`, 'must be >= initialBackoffMs');
    }
    if (d.type === 'slack') {
      const webhookUrl = readSecret(`destinations.${name}.webhookUrl`, d.webhookUrl);
      httpUrl(`destinations.${name}.webhookUrl`, webhookUrl.reveal(), false);
      destinations.set(name, { ...base, type: 'slack', webhookUrl });
    } else if (d.type === 'email') {
      const { type: _t, retry: _r, rateLimit: _l, password, username, ...smtp } = d;
      if (password !== undefined && username === undefined) throw new AlertsConfigError(`destinations.${name}.username`, 'is required with a password');
      const to = smtp.to.map((v, i) => {
        const addr = plain(`destinations.${name}.to.${i}`, v);
        if (!emailAddress.safeParse(addr).success) throw new AlertsConfigError(`destinations.${name}.to.${i}`, `"${addr}" is not an email address`);
        return addr;
      });
      destinations.set(name, {
        ...base,
        ...smtp,
        type: 'email',
        host: plain(`destinations.${name}.host`, d.host),
        from: plain(`destinations.${name}.from`, d.from),
        to,
        ...(username !== undefined ? { username: plain(`destinations.${name}.username`, username) } : {}),
        ...(password !== undefined ? { password: readSecret(`destinations.${name}.password`, password) } : {}),
      });
    } else if (d.type === 'webhook') {
      const url = readSecret(`destinations.${name}.url`, d.url);
      httpUrl(`destinations.${name}.url`, url.reveal(), false);
      destinations.set(name, { ...base, type: 'webhook', url });
    } else {
      const url = plain(`destinations.${name}.url`, d.url);
      httpUrl(`destinations.${name}.url`, url, true);
      const routingKey = readSecret(`destinations.${name}.routingKey`, d.routingKey);
      if (/\s/.test(routingKey.reveal()) || routingKey.reveal().length > 256) {
        throw new AlertsConfigError(`destinations.${name}.routingKey`, 'is not a PagerDuty routing key');
      }
      destinations.set(name, { ...base, type: 'pagerduty', url, routingKey });
    }
  }
  for (const key of ROUTE_KEYS) {
    c.routes[key].forEach((n, i) => {
      if (!destinations.has(n)) throw new AlertsConfigError(`routes.${key}.${i}`, `unknown destination "${n}"`);
    });
  }

  const renotifyIntervalMs = Math.round(c.renotify.intervalSeconds * 1000);
  const renotifyCheckMs = Math.round(
    (c.renotify.checkEverySeconds ?? Math.min(60, c.renotify.intervalSeconds / 4)) * 1000,
  );
  return {
    source: c.source,
    links,
    renotifyIntervalMs,
    renotifyCheckMs: Math.max(5, renotifyCheckMs),
    destinations,
    routes: c.routes,
    secrets,
  };
}

/** Reads and parses a YAML alerts config file (e.g. config/alerts.yaml). */
export function loadAlertsConfig(path: string, env: Env = process.env): AlertsConfig {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new AlertsConfigError(path, `cannot read alerts config: ${(e as Error).message}`);
  }
  return parseAlertsConfig(raw, env);
}

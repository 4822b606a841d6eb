import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { METERED_COMPONENTS, usdToMicros, yamlLineOf, type Component, type LlmPriceTable } from '../rules/index.ts';
import { PricingConfigError } from './errors.ts';

/**
 * Unit prices of the cost model, parsed once at start from `config/pricing.yaml` (fails fast naming the
 * key and line). USD amounts stay decimal strings; the cost model turns them into integer micro-dollars.
 */
export interface Pricing {
  compute: {
    /** C_compute_hour by environment name, USD per hour. */
    environments: Readonly<Record<string, string>>;
    /** Used for an environment not listed; when absent such an event is rejected. */
    defaultUsdPerHour?: string;
  };
  storage: {
    /** GB_stored, gigabytes held by the platform. */
    gbStored: string;
    /** C_storage_gb_month, USD per GB-month. */
    gbMonthUsd: string;
    /** Expected tasks per day when there is no history (yesterday's count is preferred when known). */
    expectedTasksDay: number;
  };
  /** LLM token prices, USD per million tokens, by model. */
  llm: LlmPriceTable;
  /**
   * USD per unit of each metered component (COMPONENT_SPECS `metered`: `<key>.<price>` in the file, e.g.
   * bandwidth.usd_per_gb); a component left out prices a task reporting it as an error.
   */
  metered?: Partial<Record<Component, string>>;
  /** Where P_native_usd (USD per native token) comes from. */
  nativePrice: NativePriceConfig;
  /** The EVM chain gas receipts are read from; absent = events naming a tx hash are rejected. */
  chain?: { rpcUrl: string; chainId?: number };
  limits: {
    /** An operation whose total is above this (USD) is rejected as implausible. */
    maxOpUsd: string;
    /** The same, USD micros (parsed once). */
    maxOpMicros: number;
    /** Largest finalized_at in the future accepted, ms (clock skew). */
    maxFutureSkewMs: number;
  };
}

export type NativePriceConfig =
  | { source: 'fixed'; usd: string }
  | {
      source: 'chainlink';
      /** AggregatorV3 feed address on the configured chain. */
      feedAddress: `0x${string}`;
      /** The price is cached this long before the feed is read again, ms. */
      maxAgeMs: number;
      /** A round older than this (by updatedAt) is refused, ms; absent = no check. */
      maxStalenessMs?: number;
    };

const usd = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const s = typeof v === 'number' ? (Number.isFinite(v) ? String(v) : 'NaN') : v.trim();
  if (!/^\d+(\.\d+)?$/.test(s)) {
    ctx.addIssue({ code: 'custom', message: `must be a non-negative decimal amount, got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return s;
});

const name = z.string().regex(/^[A-Za-z0-9._:/@-]{1,128}$/, 'must be 1-128 letters, digits or ._:/@-');

const fileSchema = z.strictObject({
  ...Object.fromEntries(METERED_COMPONENTS.map((m) => [m.key, z.strictObject({ [m.metered.price]: usd }).optional()])),
  compute: z.strictObject({
    environments: z.record(name, usd),
    default_usd_per_hour: usd.optional(),
  }),
  storage: z.strictObject({
    gb_stored: usd,
    gb_month_usd: usd,
    expected_tasks_day: z.number().int('must be a whole number').min(0).max(1e9),
  }),
  llm: z
    .strictObject({
      models: z.record(
        name,
        z.strictObject({
          input_per_mtok_usd: usd,
          output_per_mtok_usd: usd,
          // Token classes (OpenTelemetry GenAI): absent = priced as plain input / output.
          cache_read_per_mtok_usd: usd.optional(),
          cache_creation_per_mtok_usd: usd.optional(),
          reasoning_per_mtok_usd: usd.optional(),
        }),
      ),
    })
    .optional(),
  native_price: z.discriminatedUnion('source', [
    z.strictObject({ source: z.literal('fixed'), usd }),
    z.strictObject({
      source: z.literal('chainlink'),
      feed_address: z.string().regex(/^0x[0-9a-fA-F]{40}$/, 'must be a 0x-prefixed 20-byte address'),
      max_age_seconds: z.number().positive().max(86_400).default(60),
      max_staleness_seconds: z.number().positive().optional(),
    }),
  ]),
  chain: z
    .strictObject({
      rpc_url: z.url({ protocol: /^(https?|wss?)$/ }).optional(),
      chain_id: z.number().int().positive().optional(),
    })
    .optional(),
  limits: z
    .strictObject({
      max_op_usd: usd.default('1000000'),
      max_future_skew_seconds: z.number().int().min(0).max(86_400).default(300),
    })
    .optional(),
});

export interface PricingEnv {
  /** Overrides chain.rpc_url. */
  FORGE_RPC_URL?: string;
}

/** Parses the pricing file's text; `env` overrides (FORGE_RPC_URL). Throws PricingConfigError naming key and line. */
export function parsePricing(text: string, file = 'pricing.yaml', env: PricingEnv = {}): Pricing {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    throw new PricingConfigError(`${file}:${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0] ?? 'invalid YAML'}`);
  }
  const parsed = fileSchema.safeParse(doc.toJS());
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    let path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
    let msg = issue.message;
    if (issue.code === 'unrecognized_keys') {
      path = [...path, issue.keys[0]!];
      msg = `unknown key(s) ${issue.keys.join(', ')}`;
    } else if (issue.code === 'invalid_type' && issue.input === undefined) msg = 'is required';
    const line = yamlLineOf(doc, lc, path);
    const key = path.join('.') || '(file)';
    throw new PricingConfigError(`${file}${line ? `:${line}` : ''}: ${key}: ${msg}`, key);
  }
  const c = parsed.data;
  const rpcUrl = env.FORGE_RPC_URL?.trim() || c.chain?.rpc_url;
  if (env.FORGE_RPC_URL !== undefined && env.FORGE_RPC_URL.trim() !== '' && !/^(https?|wss?):\/\/\S+$/.test(env.FORGE_RPC_URL.trim())) {
    throw new PricingConfigError(`FORGE_RPC_URL: must be an http(s) or ws(s) URL, got ${JSON.stringify(env.FORGE_RPC_URL)}`, 'FORGE_RPC_URL');
  }
  if (c.native_price.source === 'chainlink' && !rpcUrl) {
    throw new PricingConfigError(`${file}: native_price: a chainlink feed needs chain.rpc_url or FORGE_RPC_URL`, 'chain.rpc_url');
  }
  const llm: Record<string, { inputPerMTokUsd: string; outputPerMTokUsd: string; cacheReadPerMTokUsd?: string; cacheCreationPerMTokUsd?: string; reasoningPerMTokUsd?: string }> = {};
  for (const [m, p] of Object.entries(c.llm?.models ?? {})) {
    llm[m] = {
      inputPerMTokUsd: p.input_per_mtok_usd,
      outputPerMTokUsd: p.output_per_mtok_usd,
      ...(p.cache_read_per_mtok_usd !== undefined ? { cacheReadPerMTokUsd: p.cache_read_per_mtok_usd } : {}),
      ...(p.cache_creation_per_mtok_usd !== undefined ? { cacheCreationPerMTokUsd: p.cache_creation_per_mtok_usd } : {}),
      ...(p.reasoning_per_mtok_usd !== undefined ? { reasoningPerMTokUsd: p.reasoning_per_mtok_usd } : {}),
    };
  }
  const np = c.native_price;
  const metered: Partial<Record<Component, string>> = {};
  for (const m of METERED_COMPONENTS) {
    const section = (c as Record<string, unknown>)[m.key] as Record<string, string> | undefined;
    const price = section?.[m.metered.price];
    if (price !== undefined) metered[m.key] = price;
  }
  return {
    metered,
    compute: { environments: c.compute.environments, ...(c.compute.default_usd_per_hour !== undefined ? { defaultUsdPerHour: c.compute.default_usd_per_hour } : {}) },
    storage: { gbStored: c.storage.gb_stored, gbMonthUsd: c.storage.gb_month_usd, expectedTasksDay: c.storage.expected_tasks_day },
    llm,
    nativePrice:
      np.source === 'fixed'
        ? { source: 'fixed', usd: np.usd }
        : {
            source: 'chainlink',
            feedAddress: np.feed_address as `0x${string}`,
            maxAgeMs: Math.round(np.max_age_seconds * 1000),
            ...(np.max_staleness_seconds !== undefined ? { maxStalenessMs: Math.round(np.max_staleness_seconds * 1000) } : {}),
          },
    ...(rpcUrl ? { chain: { rpcUrl, ...(c.chain?.chain_id !== undefined ? { chainId: c.chain.chain_id } : {}) } } : {}),
    limits: {
      maxOpUsd: c.limits?.max_op_usd ?? '1000000',
      maxOpMicros: usdToMicros(c.limits?.max_op_usd ?? '1000000'),
      maxFutureSkewMs: (c.limits?.max_future_skew_seconds ?? 300) * 1000,
    },
  };
}

/** Reads and parses a pricing file (default `config/pricing.yaml`, or FORGE_PRICING_FILE). */
export function loadPricing(path?: string, env: PricingEnv & { FORGE_PRICING_FILE?: string } = process.env): Pricing {
  const file = path ?? (env.FORGE_PRICING_FILE?.trim() || 'config/pricing.yaml');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new PricingConfigError(`${file}: cannot read pricing file (${(e as Error).message})`, 'FORGE_PRICING_FILE');
  }
  return parsePricing(text, file, env);
}

/** C_compute_hour for an environment, or undefined when none is configured. */
export function computeHourUsd(p: Pricing, environment: string): string | undefined {
  return Object.hasOwn(p.compute.environments, environment) ? p.compute.environments[environment] : p.compute.defaultUsdPerHour;
}

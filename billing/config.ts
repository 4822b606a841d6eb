import { z } from 'zod';
import { BillingError } from './errors.ts';
import { checkKeyId, masterKeys, parseMasterKey, type MasterKeys } from './vault/cipher.ts';
import type { ProviderEndpoint } from './vault/vault.ts';
import type { StripeSettings } from './stripe.ts';

/**
 * Billing configuration from the environment, parsed once at start. Every error names the variable.
 * Stripe and the vault are optional parts: absent variables leave them off (null), a half-set part fails.
 */
export interface BillingConfig {
  plansFile: string;
  /** Price book, Pay As You Go, commitments, prepaid offers, premium skills (config/usage-pricing.yaml). */
  usagePricingFile: string;
  database: string;
  vault: { keys: MasterKeys; providers: Record<string, ProviderEndpoint> } | null;
  stripe: StripeSettings | null;
}

/** Billing's variables: part of the one schema of the process that runs billing (api/config.ts). */
export const BILLING_ENV = z.object({
  FORGE_PLANS_FILE: z.string().min(1).default('config/plans.yaml'),
  FORGE_USAGE_PRICING_FILE: z.string().min(1).default('config/usage-pricing.yaml'),
  FORGE_BILLING_DATABASE: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/).default('forge'),
  FORGE_VAULT_MASTER_KEY: z.string().optional(),
  FORGE_VAULT_MASTER_KEY_ID: z.string().default('k1'),
  FORGE_VAULT_PREVIOUS_KEYS: z.string().default(''),
  FORGE_BYOK_OPENAI_BASE_URL: z.url({ protocol: /^https?$/ }).default('https://api.openai.com/v1'),
  FORGE_BYOK_ANTHROPIC_BASE_URL: z.url({ protocol: /^https?$/ }).default('https://api.anthropic.com/v1'),
  FORGE_BYOK_GOOGLE_BASE_URL: z.url({ protocol: /^https?$/ }).default('https://generativelanguage.googleapis.com/v1beta'),
  FORGE_BYOK_GROQ_BASE_URL: z.url({ protocol: /^https?$/ }).default('https://api.groq.com/openai/v1'),
  FORGE_BYOK_DEEPSEEK_BASE_URL: z.url({ protocol: /^https?$/ }).default('https://api.deepseek.com'),
  FORGE_BYOK_OPENROUTER_BASE_URL: z.url({ protocol: /^https?$/ }).default('https://openrouter.ai/api/v1'),
  FORGE_BYOK_TOGETHER_BASE_URL: z.url({ protocol: /^https?$/ }).default('https://api.together.xyz/v1'),
  FORGE_BYOK_OLLAMA_BASE_URL: z.url({ protocol: /^https?$/ }).default('http://127.0.0.1:11434'),
  STRIPE_SECRET_KEY: z.string().regex(/^(sk|rk)_(test|live)_[A-Za-z0-9]+$/, 'must look like sk_test_... or sk_live_...').optional(),
  STRIPE_WEBHOOK_SECRET: z.string().regex(/^whsec_[A-Za-z0-9+/=_-]+$/, 'must look like whsec_...').optional(),
  FORGE_STRIPE_API_BASE_URL: z.url({ protocol: /^https?$/ }).default('https://api.stripe.com'),
  FORGE_STRIPE_METER_EVENT: z.string().regex(/^[a-z][a-z0-9_]{0,99}$/).default('forge_executions'),
  FORGE_STRIPE_MAX_RETRIES: z.coerce.number().int().min(0).max(10).default(2),
});

export function loadBillingConfig(source: Record<string, string | undefined> = process.env): BillingConfig {
  // An empty variable is an unset one (as for the API's own settings).
  const r = BILLING_ENV.safeParse(Object.fromEntries(Object.entries(source).filter(([, v]) => v !== '')));
  if (!r.success) {
    const i = r.error.issues[0];
    const name = String(i?.path[0] ?? '(env)');
    throw new BillingError('FORGE_ERR_BILLING_CONFIG', `${name}: ${i?.message ?? 'invalid'}`, { field: name });
  }
  return billingConfigFrom(r.data);
}

/** The billing configuration from its variables as the process's schema parsed them (the rules across them). */
export function billingConfigFrom(e: z.output<typeof BILLING_ENV>): BillingConfig {
  let vault: BillingConfig['vault'] = null;
  if (e.FORGE_VAULT_MASTER_KEY !== undefined) {
    const active = parseMasterKey(e.FORGE_VAULT_MASTER_KEY, 'FORGE_VAULT_MASTER_KEY');
    const activeId = checkKeyId(e.FORGE_VAULT_MASTER_KEY_ID, 'FORGE_VAULT_MASTER_KEY_ID');
    const previous = new Map<string, Buffer>();
    for (const part of e.FORGE_VAULT_PREVIOUS_KEYS.split(',').map((s) => s.trim()).filter(Boolean)) {
      const idx = part.indexOf(':');
      if (idx <= 0) throw new BillingError('FORGE_ERR_VAULT_CONFIG', 'FORGE_VAULT_PREVIOUS_KEYS entries are <id>:<base64>', { field: 'FORGE_VAULT_PREVIOUS_KEYS' });
      const id = checkKeyId(part.slice(0, idx), 'FORGE_VAULT_PREVIOUS_KEYS');
      // Same id as the active key would shadow the old key and leave every key sealed under it unreadable.
      if (id === activeId) throw new BillingError('FORGE_ERR_VAULT_CONFIG', `FORGE_VAULT_PREVIOUS_KEYS: id ${id} is the active FORGE_VAULT_MASTER_KEY_ID; give the new master key a new id`, { field: 'FORGE_VAULT_PREVIOUS_KEYS' });
      previous.set(id, parseMasterKey(part.slice(idx + 1), `FORGE_VAULT_PREVIOUS_KEYS (${id})`));
    }
    vault = {
      keys: masterKeys(activeId, active, previous),
      providers: {
        openai: { baseUrl: e.FORGE_BYOK_OPENAI_BASE_URL, auth: 'bearer' },
        anthropic: { baseUrl: e.FORGE_BYOK_ANTHROPIC_BASE_URL, auth: 'x-api-key', extraHeaders: { 'anthropic-version': '2023-06-01' } },
        google: { baseUrl: e.FORGE_BYOK_GOOGLE_BASE_URL, auth: 'x-goog-api-key' },
        groq: { baseUrl: e.FORGE_BYOK_GROQ_BASE_URL, auth: 'bearer' },
        deepseek: { baseUrl: e.FORGE_BYOK_DEEPSEEK_BASE_URL, auth: 'bearer' },
        // OpenRouter lists models without a key: /key is the call that needs one.
        openrouter: { baseUrl: e.FORGE_BYOK_OPENROUTER_BASE_URL, auth: 'bearer', testPath: '/key' },
        together: { baseUrl: e.FORGE_BYOK_TOGETHER_BASE_URL, auth: 'bearer' },
        ollama: { baseUrl: e.FORGE_BYOK_OLLAMA_BASE_URL, auth: 'none', testPath: '/api/tags' },
      },
    };
  }
  let stripe: StripeSettings | null = null;
  if (e.STRIPE_SECRET_KEY !== undefined || e.STRIPE_WEBHOOK_SECRET !== undefined) {
    if (e.STRIPE_SECRET_KEY === undefined) throw new BillingError('FORGE_ERR_BILLING_CONFIG', 'STRIPE_SECRET_KEY: required with STRIPE_WEBHOOK_SECRET', { field: 'STRIPE_SECRET_KEY' });
    if (e.STRIPE_WEBHOOK_SECRET === undefined) throw new BillingError('FORGE_ERR_BILLING_CONFIG', 'STRIPE_WEBHOOK_SECRET: required with STRIPE_SECRET_KEY', { field: 'STRIPE_WEBHOOK_SECRET' });
    stripe = {
      secretKey: e.STRIPE_SECRET_KEY,
      webhookSecret: e.STRIPE_WEBHOOK_SECRET,
      apiBaseUrl: e.FORGE_STRIPE_API_BASE_URL,
      maxNetworkRetries: e.FORGE_STRIPE_MAX_RETRIES,
      meterEventName: e.FORGE_STRIPE_METER_EVENT,
    };
  }
  return { plansFile: e.FORGE_PLANS_FILE, usagePricingFile: e.FORGE_USAGE_PRICING_FILE, database: e.FORGE_BILLING_DATABASE, vault, stripe };
}

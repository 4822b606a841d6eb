import { inspect } from 'node:util';
import { BillingError } from '../errors.ts';
import { open, seal, sealedKeyId, type MasterKeys } from './cipher.ts';
import { SecretString } from './secret.ts';

/** A stored BYOK key. `agentId` '*' is the user's default for the provider; another value overrides it for one agent. */
export interface VaultRecord {
  tenantId: string;
  userId: string;
  provider: string;
  agentId: string;
  sealed: string;
  createdAt: number;
  updatedAt: number;
}

/** What the api may show about a key: never the key, nor any part or hash of it. */
export interface VaultKeyView {
  provider: string;
  agentId: string;
  masterKeyId: string;
  createdAt: number;
  updatedAt: number;
}

/** Which models a user runs on their own keys (hybrid mode). Default: all models whose provider they hold a key for. */
export type ByokMode = { mode: 'all' } | { mode: 'models'; models: string[] } | { mode: 'off' };

export interface VaultStore {
  put(r: VaultRecord): Promise<void>;
  get(tenantId: string, userId: string, provider: string, agentId: string): Promise<VaultRecord | undefined>;
  list(tenantId: string, userId: string): Promise<VaultRecord[]>;
  delete(tenantId: string, userId: string, provider: string, agentId: string): Promise<boolean>;
  /** Every record (rotation). */
  all(): Promise<VaultRecord[]>;
  getMode(tenantId: string, userId: string): Promise<ByokMode | undefined>;
  setMode(tenantId: string, userId: string, mode: ByokMode): Promise<void>;
}

export class MemoryVaultStore implements VaultStore {
  private readonly records = new Map<string, VaultRecord>();
  private readonly modes = new Map<string, ByokMode>();

  private k(t: string, u: string, p: string, a: string): string {
    return JSON.stringify([t, u, p, a]);
  }

  async put(r: VaultRecord): Promise<void> {
    this.records.set(this.k(r.tenantId, r.userId, r.provider, r.agentId), { ...r });
  }
  async get(t: string, u: string, p: string, a: string): Promise<VaultRecord | undefined> {
    const r = this.records.get(this.k(t, u, p, a));
    return r ? { ...r } : undefined;
  }
  async list(t: string, u: string): Promise<VaultRecord[]> {
    return [...this.records.values()].filter((r) => r.tenantId === t && r.userId === u).map((r) => ({ ...r }));
  }
  async delete(t: string, u: string, p: string, a: string): Promise<boolean> {
    return this.records.delete(this.k(t, u, p, a));
  }
  async all(): Promise<VaultRecord[]> {
    return [...this.records.values()].map((r) => ({ ...r }));
  }
  async getMode(t: string, u: string): Promise<ByokMode | undefined> {
    return this.modes.get(JSON.stringify([t, u]));
  }
  async setMode(t: string, u: string, m: ByokMode): Promise<void> {
    this.modes.set(JSON.stringify([t, u]), m);
  }
}

/** How to test a key against one provider's API. */
export interface ProviderEndpoint {
  /** e.g. https://api.openai.com/v1 (configurable; a loopback server in tests). */
  baseUrl: string;
  /**
   * 'bearer': Authorization: Bearer <key> (OpenAI style); 'x-api-key': Anthropic style; 'x-goog-api-key':
   * Google Gemini; 'none': a local server without keys (Ollama), where only reachability is checked.
   */
  auth: 'bearer' | 'x-api-key' | 'x-goog-api-key' | 'none';
  /** Path of a cheap authenticated GET, default /models. */
  testPath?: string;
  extraHeaders?: Record<string, string>;
}

export type KeyRouting =
  | { source: 'byok'; provider: string; model: string; key: SecretString; agentSpecific: boolean }
  | { source: 'platform'; provider: string; model: string; countedAgainstTier: true; reason: 'no_user_key' | 'hybrid_platform' | 'byok_off' };

const ID_RE = /^[A-Za-z0-9._:@-]{1,128}$/;

function aadOf(r: { tenantId: string; userId: string; provider: string; agentId: string }): string {
  return JSON.stringify(['forge.byok.v1', r.tenantId, r.userId, r.provider, r.agentId]);
}

function check(field: string, v: string): void {
  if (typeof v !== 'string' || !ID_RE.test(v)) throw new BillingError('FORGE_ERR_BILLING_INPUT', `${field} must match ${ID_RE.source}`, { field });
}

/**
 * The BYOK key vault: keys sealed with AES-256-GCM under the configured master key, tested against the
 * provider before they are kept, and handed out only as SecretString for routing. Nothing here logs.
 */
export class KeyVault {
  private keys: MasterKeys;

  constructor(
    keys: MasterKeys,
    private readonly store: VaultStore,
    private readonly providers: Readonly<Record<string, ProviderEndpoint>>,
    private readonly opts: { fetch?: typeof fetch; validateTimeoutMs?: number } = {},
  ) {
    this.keys = keys;
  }

  get activeKeyId(): string {
    return this.keys.activeKeyId;
  }

  /** The master keys must not print either (util.inspect, console, JSON). */
  [inspect.custom](): string {
    return `KeyVault(active=${this.keys.activeKeyId}, providers=${Object.keys(this.providers).join(',')})`;
  }

  toJSON(): { activeKeyId: string } {
    return { activeKeyId: this.keys.activeKeyId };
  }

  /** Tests the key with the provider, then seals and keeps it. The key is never part of an error or a return. */
  async saveKey(input: { tenantId: string; userId: string; provider: string; agentId?: string; apiKey: string | SecretString; now: number }): Promise<VaultKeyView> {
    check('tenantId', input.tenantId);
    check('userId', input.userId);
    check('provider', input.provider);
    const agentId = input.agentId ?? '*';
    if (agentId !== '*') check('agentId', agentId);
    const secret = input.apiKey instanceof SecretString ? input.apiKey : new SecretString(input.apiKey);
    const raw = secret.reveal();
    if (raw.length < 8 || raw.length > 512 || /\s/.test(raw)) {
      throw new BillingError('FORGE_ERR_BILLING_INPUT', 'apiKey must be 8..512 characters without spaces', { field: 'apiKey' });
    }
    const endpoint = this.providers[input.provider];
    if (!endpoint) {
      throw new BillingError('FORGE_ERR_BILLING_INPUT', `provider must be one of ${Object.keys(this.providers).join(', ')}`, { field: 'provider' });
    }
    await this.validateWithProvider(input.provider, endpoint, secret);
    const rec = { tenantId: input.tenantId, userId: input.userId, provider: input.provider, agentId };
    const prev = await this.store.get(rec.tenantId, rec.userId, rec.provider, rec.agentId);
    const r: VaultRecord = { ...rec, sealed: seal(this.keys, raw, aadOf(rec)), createdAt: prev?.createdAt ?? input.now, updatedAt: input.now };
    await this.store.put(r);
    return view(r);
  }

  async listKeys(tenantId: string, userId: string): Promise<VaultKeyView[]> {
    check('tenantId', tenantId);
    check('userId', userId);
    return (await this.store.list(tenantId, userId)).map(view);
  }

  async deleteKey(tenantId: string, userId: string, provider: string, agentId = '*'): Promise<boolean> {
    return this.store.delete(tenantId, userId, provider, agentId);
  }

  async setByokMode(tenantId: string, userId: string, mode: ByokMode): Promise<void> {
    check('tenantId', tenantId);
    check('userId', userId);
    if (mode.mode === 'models') for (const m of mode.models) check('models[]', m);
    await this.store.setMode(tenantId, userId, mode);
  }

  /**
   * Which key a call uses: the agent's own key, else the user's default key for the model's provider, when the
   * user's hybrid mode routes this model to BYOK; otherwise the platform key, whose spend counts against the tier.
   */
  async routeKey(q: { tenantId: string; userId: string; agentId?: string; model: string; provider: string }): Promise<KeyRouting> {
    const mode = (await this.store.getMode(q.tenantId, q.userId)) ?? { mode: 'all' };
    const platform = (reason: 'no_user_key' | 'hybrid_platform' | 'byok_off'): KeyRouting => ({
      source: 'platform',
      provider: q.provider,
      model: q.model,
      countedAgainstTier: true,
      reason,
    });
    if (mode.mode === 'off') return platform('byok_off');
    if (mode.mode === 'models' && !mode.models.includes(q.model)) return platform('hybrid_platform');
    const candidates = q.agentId !== undefined && q.agentId !== '*' ? [q.agentId, '*'] : ['*'];
    for (const agentId of candidates) {
      const r = await this.store.get(q.tenantId, q.userId, q.provider, agentId);
      if (r) {
        return { source: 'byok', provider: q.provider, model: q.model, key: open(this.keys, r.sealed, aadOf(r)), agentSpecific: agentId !== '*' };
      }
    }
    return platform('no_user_key');
  }

  /**
   * Re-seals every record under a new active master key. The old key must stay in `keys` (it opens the old
   * ciphertexts); once this returns, it can be removed from the configuration. Returns the number re-sealed.
   */
  async rotate(newKeys: MasterKeys): Promise<number> {
    let n = 0;
    for (const r of await this.store.all()) {
      if (sealedKeyId(r.sealed) === newKeys.activeKeyId) continue;
      const plain = open(newKeys, r.sealed, aadOf(r));
      await this.store.put({ ...r, sealed: seal(newKeys, plain.reveal(), aadOf(r)) });
      n++;
    }
    this.keys = newKeys;
    return n;
  }

  private async validateWithProvider(provider: string, ep: ProviderEndpoint, key: SecretString): Promise<void> {
    const f = this.opts.fetch ?? fetch;
    const headers: Record<string, string> = { ...(ep.extraHeaders ?? {}) };
    if (ep.auth === 'bearer') headers.authorization = `Bearer ${key.reveal()}`;
    else if (ep.auth === 'x-api-key') headers['x-api-key'] = key.reveal();
    else if (ep.auth === 'x-goog-api-key') headers['x-goog-api-key'] = key.reveal();
    const url = ep.baseUrl.replace(/\/+$/, '') + (ep.testPath ?? '/models');
    let status: number;
    try {
      const res = await f(url, { method: 'GET', headers, signal: AbortSignal.timeout(this.opts.validateTimeoutMs ?? 10_000) });
      status = res.status;
      await res.body?.cancel(); // the body may echo the key; never read it into an error
    } catch (err) {
      throw new BillingError('FORGE_ERR_VAULT_PROVIDER_UNREACHABLE', `${provider} at ${url}`, { cause: err instanceof Error ? err.name : 'error' });
    }
    if (status === 401 || status === 403) throw new BillingError('FORGE_ERR_VAULT_KEY_REJECTED', `${provider} answered ${status}`, { field: 'apiKey' });
    if (status < 200 || status >= 300) throw new BillingError('FORGE_ERR_VAULT_PROVIDER_UNREACHABLE', `${provider} answered ${status}`);
  }
}

function view(r: VaultRecord): VaultKeyView {
  return { provider: r.provider, agentId: r.agentId, masterKeyId: sealedKeyId(r.sealed), createdAt: r.createdAt, updatedAt: r.updatedAt };
}

/** A hybrid mode from its parts: `models` goes with mode "models" only, and is then required. */
export function byokModeOf(mode: ByokMode['mode'], models: string[] | undefined): ByokMode {
  if (mode === 'models' && (!models || models.length === 0)) throw new BillingError('FORGE_ERR_BILLING_INPUT', 'mode "models" needs the list of models', { field: 'models' });
  if (mode !== 'models' && models !== undefined) throw new BillingError('FORGE_ERR_BILLING_INPUT', 'models go only with mode "models"', { field: 'models' });
  return mode === 'models' ? { mode, models: models ?? [] } : { mode };
}

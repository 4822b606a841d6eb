import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import type { ApiKeyRecord, GuardrailEventInput, Store } from '../store/index.ts';
import { ApiError } from './errors.ts';

export const ROLES = ['runner', 'finance', 'oncall', 'auditor', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** Who is calling: the key's roles and the one tenant it is bound to (null = all tenants). */
export interface Principal {
  keyId: string;
  name: string;
  roles: readonly Role[];
  tenantId: string | null;
}

/** A key as listed (never its secret or hash). Times are ISO 8601. */
export interface KeyInfo {
  id: string;
  name: string;
  roles: Role[];
  tenantId: string | null;
  createdAt: string;
  expiresAt?: string;
  revokedAt?: string;
}

/** A new key: `key` is shown once and stored nowhere. */
export interface CreatedKey {
  id: string;
  key: string;
  expiresAt?: string;
}

export interface NewKey {
  name: string;
  roles: Role[];
  tenantId: string | null;
  /** Epoch ms after which the key is refused; null or absent: no expiry. */
  expiresAt?: number | null;
  /** Who creates it (recorded in guardrail_events); default 'forge'. */
  actor?: string;
}

/** What the key store needs from the store: the api_keys table and the guardrail log. */
export type KeyBackend = Pick<Store, 'putApiKey' | 'apiKeys' | 'apiKeysFingerprint' | 'appendGuardrailEvents'>;

export interface KeyStoreOptions {
  /** A keys.json of the file-based key store: imported once at open, then renamed to `<file>.imported`. */
  importFile?: string;
  /** How often the cache checks the table for keys created or revoked elsewhere, ms (default 1000). */
  refreshMs?: number;
  /** Where a failed refresh is reported (the cache keeps serving what it has). Default: console.error. */
  onError?: (e: unknown) => void;
  now?: () => number;
}

const PREFIX = 'fk_';
const KEY_RE = /^fk_([0-9a-f]{12})_([A-Za-z0-9_-]{32})$/;
const TENANT_RE = /^[A-Za-z0-9._-]{1,64}$/;
/** C0 and C1 controls, DEL, and the Unicode line and paragraph separators (they forge lines in listings and logs). */
function hasControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x2028 || c === 0x2029) return true;
  }
  return false;
}
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

function invalid(field: string, why: string): ApiError {
  return new ApiError('FORGE_ERR_VALIDATION', `${field} ${why}`, field);
}

function iso(ms: number | null): string | undefined {
  return ms === null ? undefined : new Date(ms).toISOString();
}

/** Keys the file-based store wrote (keys.json). */
interface FileKey {
  id: string;
  name: string;
  roles: Role[];
  tenantId: string | null;
  hash: string;
  createdAt: string;
  revokedAt?: string;
}

/** Unit tests without a store: key versions and their audit events kept in memory. */
class MemoryBackend implements KeyBackend {
  readonly records: ApiKeyRecord[] = [];
  readonly events: GuardrailEventInput[] = [];
  async putApiKey(r: ApiKeyRecord): Promise<void> {
    this.records.push({ ...r });
  }
  async apiKeys(): Promise<ApiKeyRecord[]> {
    const newest = new Map<string, ApiKeyRecord>();
    for (const r of this.records) if ((newest.get(r.id)?.version ?? 0) < r.version) newest.set(r.id, r);
    return [...newest.values()].map((r) => ({ ...r }));
  }
  async apiKeysFingerprint(): Promise<string> {
    return `${this.records.length}:${Math.max(0, ...this.records.map((r) => r.version))}`;
  }
  async appendGuardrailEvents(events: readonly GuardrailEventInput[]): Promise<void> {
    this.events.push(...events);
  }
}

/**
 * API keys, kept in the store's api_keys table (hashed: the secret is never stored) and shared by every API
 * process and the CLI. A key is `fk_<id>_<secret>`; lookups go by id and compare hashes in constant time.
 * `verify` is synchronous, on an in-memory copy that a background check refreshes at most every `refreshMs`
 * (a cheap fingerprint of the table first), so a key created or revoked elsewhere is in force within about a
 * second. Creations and revocations are recorded in guardrail_events (`key_created`, `key_revoked`).
 */
export class KeyStore {
  readonly #backend: KeyBackend;
  readonly #now: () => number;
  readonly #onError: (e: unknown) => void;
  #keys = new Map<string, ApiKeyRecord>();
  /** Keys verified recently (presented key -> principal); cleared whenever the keys are reloaded. */
  readonly #verified = new Map<string, Principal>();
  #fingerprint: string | undefined;
  #maxVersion = 0;
  /** Bumped by every local change: a reload that started before one is discarded (it may miss it). */
  #generation = 0;
  #refreshing: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;

  protected constructor(backend: KeyBackend, opts: KeyStoreOptions) {
    this.#backend = backend;
    this.#now = opts.now ?? Date.now;
    this.#onError = opts.onError ?? ((e: unknown) => console.error('[forge keys]', e));
  }

  /** The key store over the store's tables: loads the keys, imports a keys.json once, starts the refresh. */
  static async open(backend: KeyBackend, opts: KeyStoreOptions = {}): Promise<KeyStore> {
    const ks = new KeyStore(backend, opts);
    await ks.refresh();
    if (opts.importFile !== undefined) await ks.#importFile(opts.importFile);
    ks.#startRefresh(opts.refreshMs ?? 1000);
    return ks;
  }

  /** Keys in memory only (unit tests without a store). */
  static inMemory(opts: Omit<KeyStoreOptions, 'importFile'> = {}): MemoryKeyStore {
    return new MemoryKeyStore(opts);
  }

  /** Reloads the keys now if the table changed since the last load. */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#reload().finally(() => (this.#refreshing = undefined));
    return this.#refreshing;
  }

  async #reload(): Promise<void> {
    const generation = this.#generation;
    const fp = await this.#backend.apiKeysFingerprint();
    if (fp === this.#fingerprint) return;
    const records = await this.#backend.apiKeys();
    if (generation !== this.#generation) return; // a local change raced this read: the next check reloads
    this.#keys = new Map(records.map((r) => [r.id, r]));
    for (const r of records) this.#maxVersion = Math.max(this.#maxVersion, r.version);
    this.#verified.clear();
    this.#fingerprint = fp;
  }

  #startRefresh(ms: number): void {
    this.#timer = setInterval(() => {
      this.refresh().catch((e: unknown) => this.#onError(e));
    }, ms);
    this.#timer.unref();
  }

  /** Stops the background refresh (before the store closes). */
  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #nextVersion(): number {
    this.#maxVersion = Math.max(this.#maxVersion + 1, this.#now() * 1000);
    return this.#maxVersion;
  }

  protected apply(r: ApiKeyRecord): void {
    this.#generation++;
    this.#fingerprint = undefined;
    this.#keys.set(r.id, r);
    this.#verified.clear();
  }

  /** Validates a new key and builds its record and secret (nothing stored yet). */
  protected build(opts: NewKey): { record: ApiKeyRecord; key: string; event: GuardrailEventInput } {
    const now = this.#now();
    const name: unknown = opts.name;
    if (typeof name !== 'string' || name.length < 1 || name.length > 100) throw invalid('name', 'must be 1-100 characters');
    if (hasControl(name)) throw invalid('name', 'must not contain control characters');
    if (LONE_SURROGATE.test(name)) throw invalid('name', 'must be well-formed Unicode');
    if (!Array.isArray(opts.roles) || opts.roles.length === 0) throw invalid('roles', 'must name at least one role');
    for (const r of opts.roles) if (!ROLES.includes(r)) throw invalid('roles', `must be among ${ROLES.join(', ')}`);
    const tenantId = opts.tenantId ?? null;
    if (tenantId !== null && !TENANT_RE.test(tenantId)) throw invalid('tenant_id', 'must be 1-64 letters, digits, dot, dash or underscore');
    const expiresAt = opts.expiresAt ?? null;
    if (expiresAt !== null && (!Number.isSafeInteger(expiresAt) || expiresAt <= now || expiresAt >= 10_413_792_000_000)) {
      throw invalid('expires_at', 'must be a time in the future (before year 2300)');
    }
    const id = randomBytes(6).toString('hex');
    const secret = randomBytes(24).toString('base64url');
    const record: ApiKeyRecord = { id, name, roles: [...new Set(opts.roles)], tenantId, hash: hashSecret(secret), createdAt: now, expiresAt, revokedAt: null, version: this.#nextVersion() };
    return { record, key: `${PREFIX}${id}_${secret}`, event: this.#event('key_created', record, opts.actor ?? 'forge', `API key ${id} (${name}) created`) };
  }

  #event(kind: 'key_created' | 'key_revoked', r: ApiKeyRecord, actor: string, reason: string, extra: Record<string, unknown> = {}): GuardrailEventInput {
    return {
      eventId: `${kind}:${r.id}`,
      at: this.#now(),
      kind,
      scope: r.tenantId === null ? 'global' : `tenant:${r.tenantId}`,
      state: '',
      actor,
      reason,
      // Never the secret, nor its hash.
      details: { key_id: r.id, name: r.name, roles: r.roles, tenant_id: r.tenantId, expires_at: iso(r.expiresAt) ?? null, ...extra },
    };
  }

  /** Creates a key: recorded in guardrail_events, then stored; in force here at once, elsewhere within ~1 s. */
  async create(opts: NewKey): Promise<CreatedKey> {
    const { record, key, event } = this.build(opts);
    // The audit record first: a key never exists without its record (a failed store leaves a record of an attempt).
    await this.#backend.appendGuardrailEvents([event]);
    await this.#backend.putApiKey(record);
    this.apply(record);
    return { id: record.id, key, ...(record.expiresAt === null ? {} : { expiresAt: iso(record.expiresAt) }) };
  }

  /** Revokes a key (a new version with revoked_at); false when there is no active key with that id. */
  async revoke(id: string, actor = 'forge'): Promise<boolean> {
    await this.refresh();
    const k = this.#keys.get(id);
    if (!k || k.revokedAt !== null) return false;
    const record: ApiKeyRecord = { ...k, revokedAt: this.#now(), version: this.#nextVersion() };
    await this.#backend.appendGuardrailEvents([this.#event('key_revoked', record, actor, `API key ${id} (${k.name}) revoked`)]);
    await this.#backend.putApiKey(record);
    this.apply(record);
    return true;
  }

  /** Every key (never its secret or hash), oldest first. */
  list(): KeyInfo[] {
    return [...this.#keys.values()].map((k) => ({
      id: k.id,
      name: k.name,
      roles: k.roles as Role[],
      tenantId: k.tenantId,
      createdAt: new Date(k.createdAt).toISOString(),
      ...(k.expiresAt === null ? {} : { expiresAt: iso(k.expiresAt) }),
      ...(k.revokedAt === null ? {} : { revokedAt: iso(k.revokedAt) }),
    }));
  }

  #usable(k: ApiKeyRecord | undefined): k is ApiKeyRecord {
    return k !== undefined && k.revokedAt === null && (k.expiresAt === null || k.expiresAt > this.#now());
  }

  /** Resolves a presented key to a principal, or undefined (unknown, revoked or expired). Memory only. */
  verify(presented: string): Principal | undefined {
    const hit = this.#verified.get(presented);
    if (hit) return this.#usable(this.#keys.get(hit.keyId)) ? hit : undefined;
    const m = KEY_RE.exec(presented);
    if (!m) return undefined;
    const k = this.#keys.get(m[1]!);
    if (!this.#usable(k)) return undefined;
    const a = Buffer.from(hashSecret(m[2]!), 'hex');
    const b = Buffer.from(k.hash, 'hex');
    if (a.length !== b.length || !timingSafeEqual(a, b)) return undefined;
    const p: Principal = { keyId: k.id, name: k.name, roles: k.roles as Role[], tenantId: k.tenantId };
    if (this.#verified.size > 10_000) this.#verified.clear();
    this.#verified.set(presented, p);
    return p;
  }

  /** Imports the keys of a keys.json not yet in the table (hashes as they are), then renames the file. */
  async #importFile(file: string): Promise<void> {
    if (!existsSync(file)) return;
    let list: FileKey[];
    try {
      list = JSON.parse(readFileSync(file, 'utf8')) as FileKey[];
      if (!Array.isArray(list)) throw new Error('not a list');
    } catch (e) {
      throw new Error(`cannot import API keys from ${file}: ${(e as Error).message}`, { cause: e });
    }
    for (const f of list) {
      if (this.#keys.has(f.id)) continue; // imported before a crash that kept the file
      const createdAt = Date.parse(f.createdAt);
      const revokedAt = f.revokedAt ? Date.parse(f.revokedAt) : null;
      const record: ApiKeyRecord = {
        id: f.id,
        name: f.name,
        roles: [...f.roles],
        tenantId: f.tenantId ?? null,
        hash: f.hash,
        createdAt: Number.isFinite(createdAt) ? createdAt : this.#now(),
        expiresAt: null,
        revokedAt: revokedAt !== null && Number.isFinite(revokedAt) ? revokedAt : null,
        version: this.#nextVersion(),
      };
      await this.#backend.appendGuardrailEvents([this.#event('key_created', record, 'forge', `API key ${f.id} (${f.name}) imported from ${file}`, { imported: true, revoked_at: iso(record.revokedAt) ?? null })]);
      await this.#backend.putApiKey(record);
      this.apply(record);
    }
    renameSync(file, `${file}.imported`);
  }
}

/** A key store in memory (unit tests): `createNow` makes a key synchronously. */
export class MemoryKeyStore extends KeyStore {
  readonly #memory: MemoryBackend;

  constructor(opts: Omit<KeyStoreOptions, 'importFile'> = {}) {
    const memory = new MemoryBackend();
    super(memory, opts);
    this.#memory = memory;
  }

  /** The key_created / key_revoked events this store recorded. */
  get events(): readonly GuardrailEventInput[] {
    return this.#memory.events;
  }

  /** Creates a key at once (the memory backend has nothing to wait for). */
  createNow(opts: NewKey): CreatedKey {
    const { record, key, event } = this.build(opts);
    this.#memory.events.push(event);
    this.#memory.records.push(record);
    this.apply(record);
    return { id: record.id, key, ...(record.expiresAt === null ? {} : { expiresAt: iso(record.expiresAt) }) };
  }
}

/** Throws unless the principal holds one of the roles (admin may do everything). */
export function requireRole(p: Principal, roles: readonly Role[]): void {
  if (p.roles.includes('admin')) return;
  if (!roles.some((r) => p.roles.includes(r))) {
    throw new ApiError('FORGE_ERR_FORBIDDEN_ROLE', `this key lacks a role for this action (needs one of: ${roles.join(', ')})`);
  }
}

/** Throws unless the principal may see or act on the tenant. */
export function requireTenant(p: Principal, tenantId: string | undefined, field = 'tenant_id'): void {
  if (p.tenantId === null) return;
  if (tenantId !== p.tenantId) throw new ApiError('FORGE_ERR_FORBIDDEN_TENANT', `this key is bound to another tenant`, field);
}

/** True when the principal may act on every tenant (needed for the global scope). */
export function isAllTenants(p: Principal): boolean {
  return p.tenantId === null;
}

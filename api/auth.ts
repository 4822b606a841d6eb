import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
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

interface StoredKey {
  id: string;
  name: string;
  roles: Role[];
  tenantId: string | null;
  /** sha256 of the secret part; the secret itself is never stored. */
  hash: string;
  createdAt: string;
  revokedAt?: string;
}

const PREFIX = 'fk_';

function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/**
 * API keys, hashed at rest in a JSON file under the data directory (0600). A key is `fk_<id>_<secret>`;
 * lookups go by id and compare hashes in constant time. The file is re-read when it changes, so keys made
 * by `forge keys create` work in a running server.
 */
export class KeyStore {
  private keys = new Map<string, StoredKey>();
  private mtimeMs = -1;

  constructor(private readonly file: string) {
    this.reload();
  }

  private reload(): void {
    let st;
    try {
      st = statSync(this.file);
    } catch {
      this.keys.clear();
      this.mtimeMs = 0;
      return;
    }
    if (st.mtimeMs === this.mtimeMs) return;
    const list = JSON.parse(readFileSync(this.file, 'utf8')) as StoredKey[];
    this.keys = new Map(list.map((k) => [k.id, k]));
    this.verified.clear();
    this.mtimeMs = st.mtimeMs;
  }

  create(opts: { name: string; roles: Role[]; tenantId: string | null }): { key: string; id: string } {
    this.reload();
    const id = randomBytes(6).toString('hex');
    const secret = randomBytes(24).toString('base64url');
    const k: StoredKey = { id, name: opts.name, roles: [...new Set(opts.roles)], tenantId: opts.tenantId, hash: hashSecret(secret), createdAt: new Date().toISOString() };
    this.keys.set(id, k);
    this.persist();
    return { key: `${PREFIX}${id}_${secret}`, id };
  }

  revoke(id: string): boolean {
    this.reload();
    const k = this.keys.get(id);
    if (!k || k.revokedAt) return false;
    k.revokedAt = new Date().toISOString();
    this.verified.clear();
    this.persist();
    return true;
  }

  list(): Array<Omit<StoredKey, 'hash'>> {
    this.reload();
    return [...this.keys.values()].map(({ hash: _hash, ...rest }) => rest);
  }

  private persist(): void {
    mkdirSync(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify([...this.keys.values()], null, 1), { mode: 0o600 });
    renameSync(tmp, this.file);
    this.mtimeMs = statSync(this.file).mtimeMs;
  }

  /** Keys verified recently (presented key -> principal); cleared whenever the file changes. */
  private readonly verified = new Map<string, Principal>();
  private checkedAt = 0;

  /** Resolves a presented key to a principal, or undefined. */
  verify(presented: string): Principal | undefined {
    // Revocations by another process (the CLI) show up within a second.
    const now = Date.now();
    if (now - this.checkedAt > 1000) {
      this.checkedAt = now;
      this.reload();
    }
    const hit = this.verified.get(presented);
    if (hit && !this.keys.get(hit.keyId)?.revokedAt) return hit;
    const p = this.verifySlow(presented);
    if (p) {
      if (this.verified.size > 10_000) this.verified.clear();
      this.verified.set(presented, p);
    }
    return p;
  }

  private verifySlow(presented: string): Principal | undefined {
    const m = /^fk_([0-9a-f]{12})_([A-Za-z0-9_-]{32})$/.exec(presented);
    if (!m) return undefined;
    let k = this.keys.get(m[1]!);
    if (!k) {
      this.reload();
      k = this.keys.get(m[1]!);
    }
    if (!k || k.revokedAt) return undefined;
    const a = Buffer.from(hashSecret(m[2]!), 'hex');
    const b = Buffer.from(k.hash, 'hex');
    if (a.length !== b.length || !timingSafeEqual(a, b)) return undefined;
    return { keyId: k.id, name: k.name, roles: k.roles, tenantId: k.tenantId };
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

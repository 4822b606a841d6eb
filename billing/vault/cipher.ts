import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { BillingError } from '../errors.ts';
import { SecretString } from './secret.ts';

/** Master keys: the active one seals; all of them open (so a rotation can read what the old key sealed). */
export interface MasterKeys {
  activeKeyId: string;
  keys: ReadonlyMap<string, Buffer>;
}

const KEY_ID_RE = /^[A-Za-z0-9_-]{1,32}$/;
const FORMAT = 'v1';

/** Parses a base64 master key; it must decode to exactly 32 bytes (AES-256). `name` is the config variable. */
export function parseMasterKey(b64: string | undefined, name: string): Buffer {
  if (b64 === undefined || b64.trim() === '') {
    throw new BillingError('FORGE_ERR_VAULT_CONFIG', `${name} is required (base64 of 32 random bytes: openssl rand -base64 32)`, { field: name });
  }
  const s = b64.trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(s)) throw new BillingError('FORGE_ERR_VAULT_CONFIG', `${name} is not base64`, { field: name });
  const buf = Buffer.from(s, 'base64');
  if (buf.length !== 32) throw new BillingError('FORGE_ERR_VAULT_CONFIG', `${name} must decode to 32 bytes, got ${buf.length}`, { field: name });
  return buf;
}

export function checkKeyId(id: string, name: string): string {
  if (!KEY_ID_RE.test(id)) throw new BillingError('FORGE_ERR_VAULT_CONFIG', `${name} must match ${KEY_ID_RE.source}`, { field: name });
  return id;
}

export function masterKeys(activeKeyId: string, active: Buffer, previous: ReadonlyMap<string, Buffer> = new Map()): MasterKeys {
  checkKeyId(activeKeyId, 'activeKeyId');
  const keys = new Map(previous);
  keys.set(activeKeyId, active);
  return { activeKeyId, keys };
}

/**
 * Seals with AES-256-GCM: `v1.<keyId>.<iv>.<tag>.<ciphertext>` (base64url parts). The key id travels with the
 * ciphertext so a rotation knows which master key opens it. `aad` binds the ciphertext to its owner record, so
 * a ciphertext copied onto another user's record does not open.
 */
export function seal(keys: MasterKeys, plaintext: string, aad: string): string {
  const key = keys.keys.get(keys.activeKeyId);
  if (!key) throw new BillingError('FORGE_ERR_VAULT_CONFIG', `active key "${keys.activeKeyId}" missing`);
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(Buffer.from(aad, 'utf8'));
  const ct = Buffer.concat([c.update(plaintext, 'utf8'), c.final()]);
  const tag = c.getAuthTag();
  return [FORMAT, keys.activeKeyId, iv.toString('base64url'), tag.toString('base64url'), ct.toString('base64url')].join('.');
}

/** The master key id a sealed value names. */
export function sealedKeyId(sealed: string): string {
  const parts = sealed.split('.');
  if (parts.length !== 5 || parts[0] !== FORMAT) throw new BillingError('FORGE_ERR_VAULT_DECRYPT', 'malformed sealed value');
  return parts[1] as string;
}

/** Opens a sealed value; a changed byte, a wrong master key or a wrong aad fail with FORGE_ERR_VAULT_DECRYPT. */
export function open(keys: MasterKeys, sealed: string, aad: string): SecretString {
  const parts = sealed.split('.');
  if (parts.length !== 5 || parts[0] !== FORMAT) throw new BillingError('FORGE_ERR_VAULT_DECRYPT', 'malformed sealed value');
  const [, keyId, ivB, tagB, ctB] = parts as [string, string, string, string, string];
  const key = keys.keys.get(keyId);
  if (!key) throw new BillingError('FORGE_ERR_VAULT_UNKNOWN_KEY_ID', `key id "${keyId}"`);
  const iv = Buffer.from(ivB, 'base64url');
  const tag = Buffer.from(tagB, 'base64url');
  if (iv.length !== 12 || tag.length !== 16) throw new BillingError('FORGE_ERR_VAULT_DECRYPT', 'malformed iv or tag');
  try {
    const d = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: 16 });
    d.setAAD(Buffer.from(aad, 'utf8'));
    d.setAuthTag(tag);
    const pt = Buffer.concat([d.update(Buffer.from(ctB, 'base64url')), d.final()]);
    return new SecretString(pt.toString('utf8'));
  } catch (err) {
    // Deliberately no detail: a GCM failure means tampering or the wrong key, and nothing more is safe to say.
    throw new BillingError('FORGE_ERR_VAULT_DECRYPT', `sealed under "${keyId}"`, { cause: err instanceof Error ? err.name : 'error' });
  }
}

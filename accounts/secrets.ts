import { createCipheriv, createDecipheriv, createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

/**
 * Secrets of accounts at rest. Passwords: scrypt (memory-hard; N=2^15, r=8, p=1: 32 MiB and some tens of ms
 * per hash), stored as `scrypt$<logN>$<r>$<p>$<salt>$<hash>` so the cost can rise later. TOTP secrets (and
 * anything else that must be read back): AES-256-GCM under a master key, as billing's BYOK vault seals, bound to
 * the owning record by the additional data so a ciphertext copied onto another user does not open.
 */
const LOG_N = 15;
const R = 8;
const P = 1;
const KEYLEN = 32;

function scryptAsync(password: string, salt: Buffer, logN: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFKC'), salt, KEYLEN, { N: 2 ** logN, r, p, maxmem: 256 * 2 ** logN * r }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, LOG_N, R, P);
  return ['scrypt', LOG_N, R, P, salt.toString('base64url'), key.toString('base64url')].join('$');
}

/** True when the password matches the stored hash; a malformed hash never matches. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [, n, r, p, saltB, keyB] = parts as [string, string, string, string, string, string];
  const logN = Number(n);
  if (!Number.isInteger(logN) || logN < 10 || logN > 20) return false;
  const expected = Buffer.from(keyB, 'base64url');
  const key = await scryptAsync(password, Buffer.from(saltB, 'base64url'), logN, Number(r), Number(p));
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/** A password hash of nothing anyone knows: unknown emails cost the same time as known ones. */
export const DUMMY_HASH = `scrypt$${LOG_N}$${R}$${P}$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA`;

/** sha256 hex: how tokens and recovery codes are stored (they carry 128+ bits, so a fast hash suffices). */
export function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/** A random token for a link, a cookie or a challenge (256 bits, base64url). */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Parses a base64 master key (32 bytes); `name` is the config variable named in the error. */
export function parseSecretKey(b64: string, name: string): Buffer {
  const buf = Buffer.from(b64.trim(), 'base64');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64.trim()) || buf.length !== 32) throw new Error(`${name} must be base64 of 32 random bytes (openssl rand -base64 32)`);
  return buf;
}

/** Seals with AES-256-GCM: `v1.<iv>.<tag>.<ciphertext>` (base64url parts); `aad` binds it to its owner. */
export function seal(key: Buffer, plaintext: string, aad: string): string {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(Buffer.from(aad, 'utf8'));
  const ct = Buffer.concat([c.update(plaintext, 'utf8'), c.final()]);
  return ['v1', iv.toString('base64url'), c.getAuthTag().toString('base64url'), ct.toString('base64url')].join('.');
}

/** Opens a sealed value; throws on any change, a wrong key or a wrong owner. */
export function unseal(key: Buffer, sealed: string, aad: string): string {
  const [v, ivB, tagB, ctB] = sealed.split('.');
  if (v !== 'v1' || ivB === undefined || tagB === undefined || ctB === undefined) throw new Error('malformed sealed value');
  const d = createDecipheriv('aes-256-gcm', key, Buffer.from(ivB, 'base64url'), { authTagLength: 16 });
  d.setAAD(Buffer.from(aad, 'utf8'));
  d.setAuthTag(Buffer.from(tagB, 'base64url'));
  return Buffer.concat([d.update(Buffer.from(ctB, 'base64url')), d.final()]).toString('utf8');
}

/** What a sealed configuration secret (the OIDC client secret) is bound to. */
const CONFIG_AAD = 'forge-config-secret';

/** Seals a configuration secret under the accounts key (`forge accounts seal`), so it is not kept in clear. */
export function sealConfigSecret(key: Buffer, secret: string): string {
  return seal(key, secret, CONFIG_AAD);
}

/** A configuration secret as given: sealed (`v1.` ...) is opened with the accounts key, anything else is taken as is. */
export function openConfigSecret(key: Buffer, value: string): string {
  return value.startsWith('v1.') ? unseal(key, value, CONFIG_AAD) : value;
}

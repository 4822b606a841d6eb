import { createHash } from 'node:crypto';
import type { ClickHouseClient } from '@clickhouse/client';
import { STORE_ERROR_CODES, StoreError } from './errors.ts';

/** One version of an API key as stored in api_keys (never the secret; `hash` is sha256 hex of it). */
export interface ApiKeyRecord {
  id: string;
  name: string;
  roles: string[];
  /** null: the key acts on every tenant. */
  tenantId: string | null;
  hash: string;
  /** Epoch ms. */
  createdAt: number;
  expiresAt: number | null;
  revokedAt: number | null;
  /** Rises with every change, across the table (a revocation is the same id with a higher version). */
  version: number;
}

const ID_RE = /^[0-9a-f]{12}$/;
const HASH_RE = /^[0-9a-f]{64}$/;

function bad(field: string, why: string): StoreError {
  return new StoreError(STORE_ERROR_CODES.INVALID, `${field} ${why}`, { field });
}

function ms(v: number | null, field: string): number | null {
  if (v === null) return null;
  if (!Number.isSafeInteger(v) || v < 0 || v >= 10_413_792_000_000) throw bad(field, 'must be epoch milliseconds before year 2300');
  return v;
}

/** api_keys: appended versions of API keys, read back as each key's newest version. */
export class ApiKeyTable {
  readonly #client: ClickHouseClient;
  readonly #table: string;

  constructor(client: ClickHouseClient, database: string) {
    this.#client = client;
    this.#table = `${database}.api_keys`;
  }

  async put(r: ApiKeyRecord): Promise<void> {
    if (!ID_RE.test(r.id)) throw bad('id', 'must be 12 hex digits');
    if (!HASH_RE.test(r.hash)) throw bad('hash', 'must be a sha256 hex digest');
    if (!Number.isSafeInteger(r.version) || r.version < 1) throw bad('version', 'must be a positive integer');
    const row = {
      id: r.id,
      name: r.name,
      roles: r.roles,
      tenant_id: r.tenantId ?? '',
      hash: r.hash,
      created_at: ms(r.createdAt, 'createdAt'),
      expires_at: ms(r.expiresAt, 'expiresAt'),
      revoked_at: ms(r.revokedAt, 'revokedAt'),
      version: r.version,
    };
    const token = createHash('sha256').update(JSON.stringify(row)).digest('hex');
    await this.#client.insert({ table: this.#table, values: [row], format: 'JSONEachRow', clickhouse_settings: { insert_deduplication_token: token } });
  }

  /** Every key at its newest version, oldest first. */
  async list(): Promise<ApiKeyRecord[]> {
    const rs = await this.#client.query({
      query: `SELECT id, name, roles, tenant_id, hash, toUnixTimestamp64Milli(created_at) AS c,
  if(isNull(expires_at), NULL, toUnixTimestamp64Milli(assumeNotNull(expires_at))) AS e,
  if(isNull(revoked_at), NULL, toUnixTimestamp64Milli(assumeNotNull(revoked_at))) AS r, version
FROM ${this.#table} FINAL ORDER BY created_at, id`,
      format: 'JSONEachRow',
    });
    return (await rs.json<Record<string, unknown>>()).map((r) => ({
      id: String(r.id),
      name: String(r.name),
      roles: (r.roles as string[]).map(String),
      tenantId: r.tenant_id === '' ? null : String(r.tenant_id),
      hash: String(r.hash),
      createdAt: Number(r.c),
      expiresAt: r.e === null ? null : Number(r.e),
      revokedAt: r.r === null ? null : Number(r.r),
      version: Number(r.version),
    }));
  }

  /**
   * A cheap fingerprint of the table (highest version, row count, a hash over (id, version)): it changes
   * whenever a key is created or changed anywhere, so readers reload only then.
   */
  async fingerprint(): Promise<string> {
    const rs = await this.#client.query({
      query: `SELECT max(version) AS v, count() AS n, groupBitXor(cityHash64(id, version)) AS x FROM ${this.#table}`,
      format: 'JSONCompactEachRow',
    });
    const [r] = await rs.json<[number | string, number | string, number | string]>();
    return r ? r.map(String).join(':') : '';
  }
}

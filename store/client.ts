import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { createChdbConnection } from 'chdb/connection';
import { drainPending } from 'chdb';
import { STORE_ERROR_CODES, StoreError } from './errors.ts';
import { assertIdentifier } from './migrations.ts';

/** The transport @clickhouse/client drives (its HTTP one, or chdb's in-process one). */
export type ClientConnection = NonNullable<NonNullable<Parameters<typeof createClient>[0]>['connection']>;

/** How to reach ClickHouse. Without `url` the engine runs in-process (chdb) with its data under `dataDir`. */
export interface ConnectionOptions {
  /** Embedded engine data directory (default './data'). Ignored when `url` is set. */
  dataDir?: string;
  /** ClickHouse server HTTP(S) URL, e.g. http://127.0.0.1:8123. */
  url?: string;
  username?: string;
  password?: string;
  /** Database holding Forge's tables (default 'forge'). */
  database?: string;
  /** Cluster name: migrations render ON CLUSTER with ReplicatedMergeTree + Distributed. Server only. */
  cluster?: string;
  /** Per-request timeout against a server, ms (default 60 000). */
  requestTimeoutMs?: number;
  /** Test seam: wraps the transport (e.g. to inject faults). Both transports go through it. */
  wrapConnection?: (c: ClientConnection) => ClientConnection;
}

export interface OpenedClient {
  client: ClickHouseClient;
  kind: 'embedded' | 'server';
  database: string;
  cluster?: string;
  /** Where the embedded engine keeps its data (absolute), or the server URL. */
  location: string;
  close(): Promise<void>;
}

/**
 * Rows are pre-encoded into JSON lines by the store (the bytes it hashes are the bytes it sends), so a
 * string value is passed through as the line; everything else is JSON as usual.
 */
const jsonHandling = {
  parse: JSON.parse,
  stringify: (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v)),
};

export function openClient(opts: ConnectionOptions): OpenedClient {
  const database = assertIdentifier(opts.database ?? 'forge', 'database');
  if (opts.url !== undefined && opts.url !== '') {
    let url: URL;
    try {
      url = new URL(opts.url);
    } catch {
      throw new StoreError(STORE_ERROR_CODES.CONFIG, `url is not a URL: ${JSON.stringify(opts.url)}`, { field: 'url' });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new StoreError(STORE_ERROR_CODES.CONFIG, `url must be http(s), got ${url.protocol}`, { field: 'url' });
    }
    const cluster = opts.cluster === undefined || opts.cluster === '' ? undefined : assertIdentifier(opts.cluster, 'cluster');
    const base = {
      url: opts.url,
      username: opts.username ?? 'default',
      password: opts.password ?? '',
      request_timeout: opts.requestTimeoutMs ?? 60_000,
      json: jsonHandling,
      // Distributed inserts must be on the shards before the writer reports them durable.
      clickhouse_settings: cluster ? { distributed_foreground_insert: 1 as const } : {},
    };
    const client = opts.wrapConnection
      ? // Same transport as createClient would build, wrapped (tests only).
        createClient({ ...base, connection: opts.wrapConnection(httpConnection(base)) })
      : createClient(base);
    return {
      client,
      kind: 'server',
      database,
      ...(cluster ? { cluster } : {}),
      location: url.origin,
      close: () => client.close(),
    };
  }
  if (opts.cluster) throw new StoreError(STORE_ERROR_CODES.CONFIG, 'cluster needs a server url', { field: 'cluster' });
  const dir = resolve(opts.dataDir ?? './data');
  mkdirSync(dir, { recursive: true });
  const holder = lockHolder(dir);
  if (holder !== undefined) {
    throw new StoreError(STORE_ERROR_CODES.LOCKED, `the data directory ${dir} is in use by another process (PID ${holder}); one process owns it at a time`, { field: 'dataDir' });
  }
  // chdb implements client-common's Connection; @clickhouse/client bundles its own copy of that type.
  let conn = createChdbConnection({ path: dir }) as unknown as ClientConnection;
  if (opts.wrapConnection) conn = opts.wrapConnection(conn);
  const client = createClient({ connection: conn, json: jsonHandling });
  return {
    client,
    kind: 'embedded',
    database,
    location: dir,
    async close() {
      await client.close();
      // The engine binds one data directory per process; let the next open (maybe elsewhere) find it free.
      await drainPending();
    },
  };
}

/**
 * The pid of another live process holding the embedded engine's data directory, if any. The engine writes its
 * pid into `status` while it holds the directory and removes the file on close; checking first turns the
 * engine's own failure (and the line it prints on stderr) into one clear error.
 */
function lockHolder(dir: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(join(dir, 'status'), 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number(/^PID:\s*(\d+)/m.exec(text)?.[1]);
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (e) {
    // EPERM: alive, someone else's; ESRCH: a stale file left by a crash.
    return (e as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}

/** The HTTP connection createClient would make by default (only needed when a test wraps it). */
function httpConnection(base: Parameters<typeof createClient>[0]): ClientConnection {
  const probe = createClient(base) as unknown as { connection?: ClientConnection };
  if (!probe.connection) throw new StoreError(STORE_ERROR_CODES.CONFIG, 'cannot wrap the HTTP connection of this client version');
  return probe.connection;
}

/** ClickHouse error codes worth retrying: overload, timeouts, network, replication hiccups. */
const TRANSIENT_CLICKHOUSE_CODES = new Set([
  '159', // TIMEOUT_EXCEEDED
  '164', // READONLY (replica temporarily read-only)
  '202', // TOO_MANY_SIMULTANEOUS_QUERIES
  '203', // NO_FREE_CONNECTION
  '209', // SOCKET_TIMEOUT
  '210', // NETWORK_ERROR
  '241', // MEMORY_LIMIT_EXCEEDED
  '242', // TABLE_IS_READ_ONLY
  '252', // TOO_MANY_PARTS
  '285', // TOO_FEW_LIVE_REPLICAS
  '319', // UNKNOWN_STATUS_OF_INSERT
  '425', // SYSTEM_ERROR
  '999', // KEEPER_EXCEPTION
]);

const TRANSIENT_NODE_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND', 'UND_ERR_SOCKET']);

/**
 * True for failures a retry may cure. A ClickHouse error with a code outside the list (syntax, types,
 * unknown table) is permanent; errors without a ClickHouse code are network-level and retried.
 */
export function isTransient(e: unknown): boolean {
  if (e === null || typeof e !== 'object') return false;
  const err = e as { code?: unknown; type?: unknown; message?: unknown; transient?: unknown };
  if (err.transient === true) return true;
  if (typeof err.code === 'string' && /^\d+$/.test(err.code)) return TRANSIENT_CLICKHOUSE_CODES.has(err.code);
  if (typeof err.code === 'string' && TRANSIENT_NODE_CODES.has(err.code)) return true;
  if (typeof err.code === 'string' && err.code.startsWith('FORGE_ERR_')) return false;
  const msg = typeof err.message === 'string' ? err.message : '';
  return /timeout|socket hang up|ECONNRESET|ECONNREFUSED/i.test(msg);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

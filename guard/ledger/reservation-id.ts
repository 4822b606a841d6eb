import { randomBytes } from 'node:crypto';

// A reservation id carries its tenant and run, so any API process (or a runner on the same Redis) can
// settle it: `rsv_<base64url of [tenant, run]>.<unique part>`. The unique part is a per-process random
// prefix and a counter, the id's serial (admissions are a hot path: no random bytes per call).
const ID_PREFIX = randomBytes(9).toString('base64url');
let idCounter = 0;

/** The `rsv_<base64url>.` head of recent (tenant, run) pairs: encoded once, not on every admission. */
const heads = new Map<string, string>();

export function reservationIdFor(tenantId: string, runId: string): string {
  const key = `${tenantId}\u0000${runId}`;
  let head = heads.get(key);
  if (head === undefined) {
    if (heads.size >= 10_000) heads.clear();
    head = `rsv_${Buffer.from(JSON.stringify([tenantId, runId])).toString('base64url')}.${ID_PREFIX}`;
    heads.set(key, head);
  }
  return head + (idCounter++).toString(36);
}

/** The serial of the id `reservationIdFor` made last in this process. */
export function lastReservationSerial(): number {
  return idCounter - 1;
}

/** The serial of an id this process made; undefined for another process's id (or anything else). */
export function reservationSerialOf(id: string): number | undefined {
  const dot = id.lastIndexOf('.');
  if (dot < 0 || !id.startsWith(ID_PREFIX, dot + 1)) return undefined;
  const tail = id.slice(dot + 1 + ID_PREFIX.length);
  if (!/^[0-9a-z]{1,11}$/.test(tail)) return undefined;
  return parseInt(tail, 36);
}

/** The tenant and run a reservation id names; undefined for anything that is not one. */
export function scopesOfReservation(id: string): { tenantId: string; runId: string } | undefined {
  const m = /^rsv_([A-Za-z0-9_-]+)\.[A-Za-z0-9_-]{12,40}$/.exec(id);
  if (!m) return undefined;
  try {
    const v = JSON.parse(Buffer.from(m[1]!, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string') return { tenantId: v[0], runId: v[1] };
  } catch {
    /* not a reservation id */
  }
  return undefined;
}

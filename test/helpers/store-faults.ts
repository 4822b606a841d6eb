import type { ConnectionOptions } from '../../store/index.ts';

type Conn = Parameters<NonNullable<ConnectionOptions['wrapConnection']>>[0];
type InsertParams = Parameters<Conn['insert']>[0];

/** A gate: inserts wait at it until opened. */
export class Gate {
  #open = true;
  #waiters: Array<() => void> = [];
  close(): void {
    this.#open = false;
  }
  open(): void {
    this.#open = true;
    for (const w of this.#waiters.splice(0)) w();
  }
  pass(): Promise<void> {
    return this.#open ? Promise.resolve() : new Promise((r) => this.#waiters.push(r));
  }
}

export interface InsertProbe {
  /** Row counts of the cost_events inserts that reached the engine. */
  batches: number[];
  /** Highest number of cost_events inserts in progress at once. */
  maxConcurrent: number;
  /** Inserts currently waiting at the gate or running. */
  active: number;
  gate: Gate;
  /** Fail the next n cost_events inserts before they reach the engine (transient network error). */
  failBefore: number;
  /** Let the next n cost_events inserts reach the engine, then lose the reply. */
  failAfter: number;
  /** Fail the next n cost_events inserts with a permanent ClickHouse error. */
  failPermanent: number;
  /** The SQL of every query (SELECT) run through the transport, in order. */
  queries: string[];
  /** Every statement sent to the transport, in order: the SQL of a query, the INSERT line of an insert. */
  statements: string[];
  /** Fail (permanently) every cost_events insert whose rows this matches. */
  failWhen?: (rows: string) => boolean;
}

class NetworkError extends Error {
  readonly code = 'ECONNRESET';
}

class PermanentError extends Error {
  readonly code = '62'; // SYNTAX_ERROR: never retried
}

function rowCount(values: unknown): number {
  return typeof values === 'string' ? values.split('\n').filter((l) => l !== '').length : 0;
}

/**
 * A real transport wrapped to observe and break cost_events inserts (the engine underneath is the real one).
 * Use as openStore({ wrapConnection: probe.wrap }).
 */
export function insertProbe(): InsertProbe & { wrap: (c: Conn) => Conn } {
  const probe: InsertProbe = { batches: [], maxConcurrent: 0, active: 0, gate: new Gate(), failBefore: 0, failAfter: 0, failPermanent: 0, queries: [], statements: [] };
  const wrap = (c: Conn): Conn =>
    new Proxy(c, {
      get(target, prop) {
        if (prop === 'query') {
          return (params: Parameters<Conn['query']>[0]) => {
            probe.queries.push(params.query);
            probe.statements.push(params.query);
            return target.query(params);
          };
        }
        if (prop === 'insert') {
          return async (params: InsertParams) => {
            probe.statements.push(params.query);
            if (!params.query.includes('.cost_events ')) return target.insert(params);
            probe.active++;
            probe.maxConcurrent = Math.max(probe.maxConcurrent, probe.active);
            try {
              await probe.gate.pass();
              if (probe.failWhen && typeof params.values === 'string' && probe.failWhen(params.values)) throw new PermanentError('injected permanent failure (matched rows)');
              if (probe.failPermanent > 0) {
                probe.failPermanent--;
                throw new PermanentError('injected permanent failure');
              }
              if (probe.failBefore > 0) {
                probe.failBefore--;
                throw new NetworkError('injected: connection reset before the insert');
              }
              const r = await target.insert(params);
              probe.batches.push(rowCount(params.values));
              if (probe.failAfter > 0) {
                probe.failAfter--;
                throw new NetworkError('injected: reply lost after the insert landed');
              }
              return r;
            } finally {
              probe.active--;
            }
          };
        }
        const v: unknown = Reflect.get(target, prop, target);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  return Object.assign(probe, { wrap });
}

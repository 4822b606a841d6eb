import { STORE_ERROR_CODES, StoreError } from './errors.ts';

/**
 * Which rows of the log a query reads. A tenant (optionally one run of it), or every tenant, said out loud:
 * a forgotten tenant filter is a type error, never a global query by accident.
 */
export type LogScope = { tenantId: string; runId?: string } | { allTenants: true };

const TENANT_RE = /^[A-Za-z0-9._-]{1,64}$/;
const RUN_RE = /^[A-Za-z0-9._:-]{1,128}$/;

export interface ScopeSql {
  /** A WHERE fragment with parameters only ({tenant:String}, {run:String}). */
  where: string;
  params: Record<string, string>;
}

export function scopeSql(scope: LogScope, column = 'tenant_id'): ScopeSql {
  if (scope === null || typeof scope !== 'object') throw bad('scope', 'must be { tenantId } or { allTenants: true }');
  if ('allTenants' in scope) {
    if (scope.allTenants !== true) throw bad('scope.allTenants', 'must be true');
    return { where: '1 = 1 /* all tenants, explicitly */', params: {} };
  }
  if (typeof scope.tenantId !== 'string' || !TENANT_RE.test(scope.tenantId)) throw bad('scope.tenantId', 'must be 1-64 letters, digits or ._-');
  if (scope.runId === undefined) return { where: `${column} = {tenant:String}`, params: { tenant: scope.tenantId } };
  if (typeof scope.runId !== 'string' || !RUN_RE.test(scope.runId)) throw bad('scope.runId', 'must be 1-128 letters, digits or ._:-');
  return { where: `${column} = {tenant:String} AND run_id = {run:String}`, params: { tenant: scope.tenantId, run: scope.runId } };
}

/** The log scope of a scope key (`global`, `tenant:<id>`, `run:<tenant>/<run>`), or undefined. */
export function logScopeOf(key: string): LogScope | undefined {
  if (key === 'global') return { allTenants: true };
  const t = /^tenant:([A-Za-z0-9._-]{1,64})$/.exec(key);
  if (t) return { tenantId: t[1] as string };
  const r = /^run:([A-Za-z0-9._-]{1,64})\/([A-Za-z0-9._:-]{1,128})$/.exec(key);
  if (r) return { tenantId: r[1] as string, runId: r[2] as string };
  return undefined;
}

/** The tenant a scope key belongs to ('' for global). */
export function tenantOfScopeKey(key: string): string | undefined {
  const s = logScopeOf(key);
  if (!s) return undefined;
  return 'allTenants' in s ? '' : s.tenantId;
}

function bad(field: string, why: string): StoreError {
  return new StoreError(STORE_ERROR_CODES.INVALID, `${field} ${why}`, { field });
}

export function checkTime(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(field, 'must be epoch milliseconds (a non-negative integer)');
  return v;
}

import type { FastifyContextConfig, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { SessionUser } from '../accounts/index.ts';
import { parseScope, type ScopeKey } from '../rules/index.ts';
import { requireRole, requireTenant, type KeyStore, type Principal, type Role } from './auth.ts';
import { httpErrorOf } from '../collector/index.ts';
import { ApiError, ERRORS, type ErrorBody, type ErrorCode } from './errors.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
    /** Set when the request was authenticated by a web UI session cookie (not an API key). */
    sessionUser?: SessionUser;
  }
  interface FastifyContextConfig {
    /** Roles allowed on the route (admin always is); `public: true` routes skip authentication. */
    roles?: readonly Role[];
    public?: boolean;
    /** The route shows every tenant's data (or acts on all): a key bound to one tenant gets 403. */
    allTenants?: boolean;
    /** The route names a tenant that need not exist yet (creating one). */
    newTenant?: boolean;
    /** A public route that changes state for a browser (sign-in): it needs the CSRF token too. */
    csrf?: boolean;
  }
}

/** Web UI sessions beside API keys: the cookie's user, and the CSRF check for changes made with cookies. */
export interface SessionAuth {
  cookie: string;
  session(token: string): Promise<SessionUser | undefined>;
  /** Throws FORGE_ERR_CSRF unless the request carries the token that matches its CSRF cookie. */
  checkCsrf(req: FastifyRequest): Promise<void>;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Which tenants exist: known from the bands file, created through the API, or bound to a key. */
export interface TenantDirectory {
  has(tenantId: string): boolean | Promise<boolean>;
}

/** The authenticated principal of a request (routes that are not public always have one). */
export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new ApiError('FORGE_ERR_UNAUTHENTICATED', 'an API key is required', 'authorization');
  return req.principal;
}

/**
 * Authentication and role checks (onRequest, before the body is even read) for every non-public route;
 * then (preHandler, after validation) the tenant the request names: another tenant's is 403, an unknown
 * one 404 FORGE_ERR_TENANT_NOT_FOUND.
 */
export function installAuth(app: FastifyInstance, keys: KeyStore, tenants?: TenantDirectory, sessions?: SessionAuth): void {
  // Callback hooks, not async ones: they run on every request, and a promise per hook per request is a
  // measurable share of a small route (the admission path). Only a web UI session waits for the store.
  app.addHook('onRequest', (req, _reply, done) => {
    let session: Promise<void> | undefined;
    try {
      session = authenticate(req, keys, sessions);
    } catch (e) {
      done(e as Error);
      return;
    }
    if (!session) return done();
    session.then(() => done(), (e: unknown) => done(e as Error));
  });
  // Query strings are text: the fields a route declares as numbers are read as plain decimal integers
  // here, and nothing else is converted (the validator never coerces). Only routes that declare one get it.
  app.addHook('onRoute', (route) => {
    const props = (route.schema?.querystring as { properties?: Record<string, { type?: unknown }> } | undefined)?.properties ?? {};
    const numeric = Object.keys(props).filter((k) => props[k]?.type === 'integer' || props[k]?.type === 'number');
    if (numeric.length === 0) return;
    const read = (req: FastifyRequest, _reply: FastifyReply, done: (e?: Error) => void): void => {
      const q = req.query as Record<string, unknown> | undefined;
      if (q) for (const k of numeric) if (typeof q[k] === 'string' && /^-?\d{1,15}$/.test(q[k])) q[k] = Number(q[k]);
      done();
    };
    const before = route.preValidation;
    route.preValidation = before === undefined ? [read] : [...(Array.isArray(before) ? before : [before]), read];
  });
  app.addHook('preHandler', (req, _reply, done) => {
    const cfg = req.routeOptions.config;
    // Changes a browser makes with its cookies (and sign-ins) carry the CSRF token; API keys are not ambient.
    const csrf = sessions && !SAFE_METHODS.has(req.method) && (req.sessionUser || (cfg?.public && cfg.csrf)) ? sessions.checkCsrf(req) : undefined;
    let pending: Promise<void> | undefined;
    try {
      pending = csrf ? csrf.then(() => checkTenants(req, cfg, tenants)) : checkTenants(req, cfg, tenants);
    } catch (e) {
      return done(e as Error);
    }
    if (!pending) return done();
    pending.then(() => done(), (e: unknown) => done(e as Error));
  });
}

/** Where a request may name tenants: path parameters, query string, body (the field is the key's name). */
const PARAM_KEYS = ['tenant', 'scope'] as const;
const QUERY_KEYS = ['tenant_id', 'tenant', 'scope'] as const;
const BODY_KEYS = ['tenant_id'] as const;
const TENANT_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * The tenants a request names: the caller's own (else 403), and existing (else 404); a promise only when
 * the directory answers with one. Runs on every request: no lists or closures unless a check waits.
 */
function checkTenants(req: FastifyRequest, cfg: FastifyContextConfig | undefined, tenants?: TenantDirectory): Promise<void> | undefined {
  const p = req.principal;
  if (cfg?.public || !p) return undefined;
  const directory = tenants && !cfg?.newTenant ? tenants : undefined;
  let pending = checkNamedIn(req.params, PARAM_KEYS, p, directory, undefined);
  pending = checkNamedIn(req.query, QUERY_KEYS, p, directory, pending);
  if (!Buffer.isBuffer(req.body)) pending = checkNamedIn(req.body, BODY_KEYS, p, directory, pending);
  return pending;
}

/** Checks each tenant named under `keys` of one part of the request, in order; returns the checks still waiting. */
function checkNamedIn(where: unknown, keys: readonly string[], p: Principal, directory: TenantDirectory | undefined, pending: Promise<void> | undefined): Promise<void> | undefined {
  if (where === null || typeof where !== 'object') return pending;
  for (const k of keys) {
    const v = (where as Record<string, unknown>)[k];
    if (typeof v !== 'string') continue;
    // Only a well-formed id is looked up; anything else is the route's validation's to refuse.
    let tenantId: string | undefined;
    if (k === 'scope') {
      const s = parseScope(v);
      if (!s || s.kind === 'global' || s.tenantId === undefined) continue;
      tenantId = s.tenantId;
    } else if (TENANT_ID_RE.test(v)) {
      tenantId = v;
    } else {
      continue;
    }
    requireTenant(p, tenantId, k);
    if (directory) pending = checkExists(directory, tenantId, k, pending);
  }
  return pending;
}

function checkExists(directory: TenantDirectory, tenantId: string, field: string, pending: Promise<void> | undefined): Promise<void> | undefined {
  const known = directory.has(tenantId);
  if (typeof known === 'boolean' && !pending) {
    if (!known) throw tenantNotFound(tenantId, field);
    return undefined;
  }
  return (pending ?? Promise.resolve())
    .then(() => known)
    .then((has) => {
      if (!has) throw tenantNotFound(tenantId, field);
    });
}

function tenantNotFound(tenantId: string, field: string): ApiError {
  return new ApiError('FORGE_ERR_TENANT_NOT_FOUND', `tenant "${tenantId}" does not exist (bands file, or POST /v1/tenants)`, field);
}

/**
 * The principal of a request to a non-public route, with its role checked (throws the 401 or 403): from
 * its API key, synchronously, or from its web UI session cookie (the promise that sets it).
 */
function authenticate(req: FastifyRequest, keys: KeyStore, sessions?: SessionAuth): Promise<void> | undefined {
  // routeOptions is a getter that builds a new object on every read: read once.
  const route = req.routeOptions;
  const cfg = route.config;
  if (cfg?.public || !route.url) return undefined;
  const h = req.headers.authorization;
  const presented = h?.startsWith('Bearer ') ? h.slice(7).trim() : (req.headers['x-api-key'] as string | undefined);
  const cookie = sessions && !presented ? (req as FastifyRequest & { cookies?: Record<string, string | undefined> }).cookies?.[sessions.cookie] : undefined;
  if (sessions && cookie) {
    return sessions.session(cookie).then((u) => {
      if (!u) throw new ApiError('FORGE_ERR_UNAUTHENTICATED', 'the session ended or expired: sign in again', 'cookie');
      req.sessionUser = u;
      req.principal = { keyId: `user:${u.userId}`, name: u.email, roles: u.roles as Role[], tenantId: u.tenantId };
      requireRole(req.principal, cfg?.roles ?? []);
      if (cfg?.allTenants) throw new ApiError('FORGE_ERR_FORBIDDEN_TENANT', 'this route covers every tenant: it needs a key bound to all tenants', 'authorization');
    });
  }
  if (!presented) throw new ApiError('FORGE_ERR_UNAUTHENTICATED', 'an API key is required: send "Authorization: Bearer <key>"', 'authorization');
  const p = keys.verify(presented);
  if (!p) throw new ApiError('FORGE_ERR_UNAUTHENTICATED', 'the API key is not valid or was revoked', 'authorization');
  req.principal = p;
  requireRole(p, cfg?.roles ?? []);
  if (cfg?.allTenants && p.tenantId !== null) throw new ApiError('FORGE_ERR_FORBIDDEN_TENANT', 'this route covers every tenant: it needs a key bound to all tenants', 'authorization');
  return undefined;
}

/** Parses a scope path parameter and checks the caller may see it. */
export function scopeParam(req: FastifyRequest, raw: string): ScopeKey {
  const parsed = parseScope(raw);
  if (!parsed) throw new ApiError('FORGE_ERR_VALIDATION', 'scope must be "global", "tenant:<id>" or "run:<tenant>/<run>" (encode / as %2F)', 'scope');
  const p = principalOf(req);
  if (parsed.kind === 'global') {
    if (p.tenantId !== null) throw new ApiError('FORGE_ERR_FORBIDDEN_TENANT', 'the global scope needs a key bound to all tenants', 'scope');
  } else {
    requireTenant(p, parsed.tenantId, 'scope');
  }
  return raw;
}

/**
 * The one error handler: one shape for every failure; 4xx say what to fix and name the field; 5xx hide
 * internals. The mapping of parts' coded errors and the framework's own is collector/http-errors.ts.
 */
export function installErrorHandler(app: FastifyInstance, onError: (e: unknown, where: string) => void): void {
  app.setErrorHandler((err: FastifyError | ApiError | Error, req: FastifyRequest, reply: FastifyReply) => {
    let status: number;
    let body: ErrorBody;
    const coded = err as { code?: unknown; field?: unknown };
    const mapped = httpErrorOf(err);
    if (mapped) {
      ({ status, body } = mapped);
    } else if (typeof coded.code === 'string' && coded.code in ERRORS && ERRORS[coded.code as ErrorCode] < 500) {
      // A part's own error whose code is in the registry (guard's FORGE_ERR_CONFLICT, ...): same status, same shape.
      status = ERRORS[coded.code as ErrorCode];
      body = { error: { code: coded.code, message: err.message, ...(typeof coded.field === 'string' ? { field: coded.field } : {}) } };
    } else {
      status = coded.code === 'FORGE_ERR_LEDGER_UNAVAILABLE' || coded.code === 'FORGE_ERR_UNAVAILABLE' ? 503 : 500;
      onError(err, `${req.method} ${req.routeOptions.url ?? req.url}`);
      body =
        status === 503
          ? { error: { code: 'FORGE_ERR_UNAVAILABLE', message: 'shared state is unreachable; try again shortly' } }
          : { error: { code: 'FORGE_ERR_INTERNAL', message: `internal error (request ${req.id})` } };
    }
    if (status === 405) void reply.header('allow', (err as { allow?: string }).allow ?? '');
    void reply.status(status).send(body);
  });
}

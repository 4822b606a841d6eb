import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERRORS } from '../api/errors.ts';
import { ROLES, type Role } from '../api/index.ts';
import { startForge, type RunningForge } from '../cli/forge-process.ts';
import { ForgeMetrics } from '../collector/index.ts';

/*
 * Hostile input, table-driven from the OpenAPI document: every operation gets no key, bad and revoked keys,
 * a wrong role, another tenant's key, an unknown tenant, and every body, query and path field wrong-typed,
 * missing, out of range and with control characters, an unknown field, a wrong content type and an
 * oversize body. Each must be a 4xx in the Forge shape (a registry code, the field at fault), and the
 * store must not change. A new route joins by being in the document.
 */

const NOW = Date.parse('2026-03-03T12:00:00Z');
const BODY_LIMIT = 16 * 1024;
let forge: RunningForge;
const logged: string[] = [];
const keys: Record<string, string> = {};
const auth = (k: string) => ({ authorization: `Bearer ${k}` });

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'forge-hostile-'));
  writeFileSync(join(dir, 'bands.yaml'), 'global:\n  B_day_soft: 25\n  B_day_hard: 100\n  B_week_soft: 400\n  B_week_hard: 500\n  B_run_cap: 1000\n  B_unit_cap: 100\ntenants:\n  demo: {}\n  other: {}\n');
  writeFileSync(
    join(dir, 'pricing.yaml'),
    'compute:\n  environments:\n    cpu: "0.40"\nstorage:\n  gb_stored: "0"\n  gb_month_usd: "0"\n  expected_tasks_day: 1\nllm:\n  models:\n    gpt-4o-mini: { input_per_mtok_usd: "0.15", output_per_mtok_usd: "0.60" }\nnative_price:\n  source: fixed\n  usd: "2500"\n',
  );
  forge = await startForge({
    env: {
      FORGE_DATA_DIR: join(dir, 'data'), FORGE_PORT: '0', FORGE_BUDGETS_FILE: join(dir, 'bands.yaml'), FORGE_PRICING_FILE: join(dir, 'pricing.yaml'),
      FORGE_LOG_LEVEL: 'silent', FORGE_BODY_LIMIT_BYTES: String(BODY_LIMIT),
      // Web UI accounts on, so their routes are walked too (no mail is ever sent: every case is refused first).
      FORGE_ACCOUNTS_SECRET_KEY: Buffer.alloc(32, 3).toString('base64'), FORGE_SMTP_URL: 'smtp://127.0.0.1:9', FORGE_COOKIE_SECURE: 'false',
    },
    now: () => NOW,
    log: (l) => logged.push(l),
  });
  keys.admin = (await forge.keys.create({ name: 'admin', roles: ['admin'], tenantId: null })).key;
  for (const r of ROLES) {
    keys[r] = (await forge.keys.create({ name: r, roles: [r], tenantId: null })).key;
    keys[`other:${r}`] = (await forge.keys.create({ name: `other-${r}`, roles: [r], tenantId: 'other' })).key;
  }
  const revoked = await forge.keys.create({ name: 'revoked', roles: ['admin'], tenantId: null });
  await forge.keys.revoke(revoked.id);
  keys.revoked = revoked.key;
}, 60_000);

afterAll(async () => {
  await forge?.close();
  expect(logged, 'no route failed internally').toEqual([]);
});

// ------------------------------------------------------------------ the store's fingerprint

async function fingerprint(): Promise<string> {
  const db = forge.store.database;
  const parts: unknown[] = [forge.keys.list().map((k) => [k.id, k.name, k.roles, k.tenantId, k.revokedAt ?? null])];
  for (const table of ['cost_events', 'guardrail_events', 'tenants', 'credit_entries', 'billing_accounts', 'byok_keys', 'byok_modes']) {
    const rs = await forge.store.client.query({ query: `SELECT count() AS n FROM ${db}.${table}`, format: 'JSONEachRow' });
    parts.push([table, (await rs.json<{ n: string }>())[0]?.n]);
  }
  // Live state: spend and reservations of every scope the guard knows.
  await forge.guardrail.drain();
  parts.push(forge.guardrail.knownScopes().sort().map((s) => [s, forge.guardrail.totals(s)]));
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
}

// ------------------------------------------------------------------ valid samples, from the schema and a few names

interface Schema {
  type?: string | string[];
  enum?: unknown[];
  anyOf?: Schema[];
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  format?: string;
}

const RESERVATION = `rsv_${Buffer.from(JSON.stringify(['demo', 'r1'])).toString('base64url')}.AAAAAAAAAAAAAAAA`;
const BY_NAME: Record<string, unknown> = {
  tenant_id: 'demo', tenant: 'demo', scope: 'tenant:demo', run_id: 'r1', user_id: 'u1', user: 'u1', agent_id: 'a'.repeat(64), suite: 'healthcare-v1', execution_id: 'ex1', id: RESERVATION,
  purchase_id: 'pay-1', request_id: 'req-1', reason: 'hostile input test', name: 'hostile', event_id: 'ev-1', task_type: 'eval', skill: 'code',
  provider: 'openai', api_key: 'sk-test-abcdefgh', email: 'ops@example.com', month: '2026-03', actual_cost_usd: '1', estimated_cost_usd: '1',
  llm_cost_usd: '1', estimated_llm_cost_usd: '1', roles: ['runner'], max_tokens: 1000,
  evaluation_fee_usd: '1', additional_usd: '1', max_fee_gwei: '20', compute_hours: '1',
  // An empty ZIP (its end-of-central-directory record), as canonical base64.
  zip_base64: 'UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==',
  cost_so_far_usd: '1', ceiling_usd: '1', normal_usd: '1', incident_id: `inc_${'0'.repeat(24)}`,
  start_month: '2026-12', term_months: 12, executions_per_month: 100_000,
};

function typesOf(s: Schema): string[] {
  if (s.anyOf) return s.anyOf.flatMap(typesOf);
  return s.type === undefined ? [] : Array.isArray(s.type) ? s.type : [s.type];
}

function sample(name: string, s: Schema): unknown {
  if (name in BY_NAME) return BY_NAME[name];
  if (name.startsWith('B_')) return '1';
  if (s.enum) return s.enum[0];
  if (s.anyOf) return sample(name, s.anyOf[0]!);
  const t = typesOf(s).find((x) => x !== 'null');
  if (t === 'integer' || t === 'number') return Math.max(s.minimum ?? 1, 1);
  if (t === 'boolean') return true;
  if (t === 'array') return s.items ? [sample(name, s.items)] : [];
  if (t === 'object') return Object.fromEntries(Object.entries(s.properties ?? {}).map(([k, v]) => [k, sample(k, v)]));
  if (s.format === 'date-time') return new Date(NOW - 3_600_000).toISOString();
  return 'x';
}

// ------------------------------------------------------------------ the operations

interface Op {
  method: string;
  path: string;
  roles: Role[];
  allTenants: boolean;
  newTenant: boolean;
  params: Array<{ name: string; in: 'path' | 'query'; required: boolean; schema: Schema }>;
  body?: Schema;
  bodyTypes: string[];
  public: boolean;
}

/** The sample event /v1/events validates with the collector's own schema (its OpenAPI body is open). */
const EVENT = {
  event_id: 'ev-hostile', tenant_id: 'demo', run_id: 'r1', task_id: 't1', task_type: 'eval', environment: 'cpu', status: 'success',
  finalized_at: '2026-03-03T10:00:00Z', rli_eval_usd: '1', task_hours: '0',
};
const EVENT_SCHEMA: Schema = {
  type: 'object',
  required: ['event_id', 'tenant_id', 'run_id', 'task_id', 'task_type', 'status', 'finalized_at'],
  properties: {
    event_id: { type: 'string', maxLength: 128 }, tenant_id: { type: 'string', maxLength: 64 }, run_id: { type: 'string', maxLength: 128 }, task_id: { type: 'string', maxLength: 128 },
    task_type: { type: 'string', maxLength: 128 }, environment: { type: 'string', maxLength: 64 }, status: { type: 'string', enum: ['success', 'failed', 'retried'] },
    finalized_at: { type: 'string', format: 'date-time' }, rli_eval_usd: { anyOf: [{ type: 'string' }, { type: 'number', minimum: 0, maximum: 1e6 }] }, task_hours: { anyOf: [{ type: 'string' }, { type: 'number', minimum: 0, maximum: 8784 }] },
  },
};
const OTLP_TRACES = {
  resourceSpans: [{
    scopeSpans: [{ spans: [{ traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', name: 'chat', endTimeUnixNano: String((NOW - 3_600_000) * 1e6), attributes: [{ key: 'gen_ai.request.model', value: { stringValue: 'x' } }] }] }],
  }],
};
const OTLP = { resourceLogs: [{ scopeLogs: [{ logRecords: [{ eventName: 'forge.task.finalized', body: { kvlistValue: { values: [] } } }] }] }] };

function operations(): Op[] {
  const doc = forge.app.swagger() as unknown as { paths: Record<string, Record<string, Record<string, unknown>>> };
  const ops: Op[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, o] of Object.entries(methods)) {
      const content = (o.requestBody as { content?: Record<string, { schema: Schema }> } | undefined)?.content;
      ops.push({
        method: method.toUpperCase(),
        path,
        roles: (o['x-forge-roles'] as Role[] | undefined) ?? [],
        allTenants: o['x-forge-all-tenants'] === true,
        newTenant: o['x-forge-new-tenant'] === true,
        params: ((o.parameters as Op['params'] | undefined) ?? []).map((p) => ({ ...p, required: p.required === true })),
        ...(content?.['application/json'] ? { body: content['application/json'].schema } : {}),
        bodyTypes: Object.keys(content ?? {}),
        public: Array.isArray(o.security) && o.security.length === 0,
      });
    }
  }
  return ops;
}

/** The operation's body schema for field cases (/v1/events: the event's own fields). */
function bodySchemaOf(op: Op): Schema | undefined {
  if (op.path === '/v1/events') return EVENT_SCHEMA;
  if (op.path === '/v1/logs' || op.path === '/v1/traces') return undefined;
  return op.body;
}

interface Req {
  path: Record<string, string>;
  query: Record<string, string>;
  body: unknown;
  /** Raw JSON text, when the body cannot be a JS value (1e309). */
  raw?: string;
  headers: Record<string, string>;
}

function baseline(op: Op): Req {
  const path: Record<string, string> = {};
  const query: Record<string, string> = {};
  for (const p of op.params) {
    if (p.in === 'path') path[p.name] = String(sample(p.name, p.schema));
    else if (p.required) query[p.name] = String(sample(p.name, p.schema));
  }
  const s = bodySchemaOf(op);
  const body = op.path === '/v1/events' ? { ...EVENT } : op.path === '/v1/logs' ? OTLP : op.path === '/v1/traces' ? OTLP_TRACES : s ? sample('', s) : undefined;
  return { path, query, body, headers: auth(keys.admin!) };
}

function inject(op: Op, r: Req): InjectOptions {
  const url = op.path.replace(/\{(\w+)\}/g, (_m, n: string) => encodeURIComponent(r.path[n] ?? ''));
  const qs = new URLSearchParams(r.query).toString();
  const hasBody = r.raw !== undefined || r.body !== undefined;
  return {
    method: op.method as InjectOptions['method'],
    url: qs ? `${url}?${qs}` : url,
    headers: { ...(hasBody ? { 'content-type': 'application/json' } : {}), ...r.headers },
    ...(r.raw !== undefined ? { payload: r.raw } : r.body !== undefined ? { payload: JSON.stringify(r.body) } : {}),
  };
}

interface Case {
  name: string;
  req: Req;
  status: number;
  code: string;
  /** The field the error must name (undefined: any field). */
  field?: string;
}

const CONTROL = 'ok\u0000\u001b[2J';

/** Wrong-typed, out-of-range and control-character values for one field. */
function badValues(s: Schema): Array<{ what: string; value?: unknown; raw?: string }> {
  const types = typesOf(s);
  const out: Array<{ what: string; value?: unknown; raw?: string }> = [];
  if (types.includes('string') && types.includes('number')) out.push({ what: 'a list', value: [5] }, { what: 'an exponent string', value: '1e5' }, { what: '1e309', raw: '1e309' });
  else if (types.includes('string') || s.enum) out.push({ what: 'a number', value: 12345 });
  else if (types.includes('integer') || types.includes('number')) out.push({ what: 'a string', value: '3' }, { what: '1e309', raw: '1e309' });
  else if (types.includes('boolean')) out.push({ what: 'a number', value: 1 });
  else if (types.includes('array')) out.push({ what: 'a string', value: 'x' });
  else if (types.includes('object')) out.push({ what: 'a string', value: 'x' });
  if (s.maximum !== undefined) out.push({ what: 'above the maximum', value: s.maximum + 1 });
  if (s.minimum !== undefined) out.push({ what: 'below the minimum', value: s.minimum - 1 });
  if (types.includes('string')) {
    out.push({ what: 'control characters', value: CONTROL });
    if (s.format === 'date-time') out.push({ what: 'year 1', value: '0001-01-01T00:00:00Z' }, { what: 'year 9999', value: '9999-12-31T00:00:00Z' });
    else out.push({ what: 'too long', value: 'a'.repeat((s.maxLength ?? 2000) + 1) });
  }
  return out;
}

function cases(op: Op): Case[] {
  const base = baseline(op);
  const out: Case[] = [];
  const withHeaders = (h: Record<string, string>): Req => ({ ...base, headers: h });
  const bad = (name: string, req: Req, field?: string): void => void out.push({ name, req, status: 400, code: 'FORGE_ERR_VALIDATION', ...(field !== undefined ? { field } : {}) });
  if (!op.public) {
    out.push({ name: 'no key', req: withHeaders({}), status: 401, code: 'FORGE_ERR_UNAUTHENTICATED', field: 'authorization' });
    out.push({ name: 'a bad key', req: withHeaders(auth(`fk_000000000000_${'A'.repeat(32)}`)), status: 401, code: 'FORGE_ERR_UNAUTHENTICATED', field: 'authorization' });
    out.push({ name: 'a revoked key', req: withHeaders(auth(keys.revoked!)), status: 401, code: 'FORGE_ERR_UNAUTHENTICATED', field: 'authorization' });
    const wrong = ROLES.find((r) => r !== 'admin' && !op.roles.includes(r));
    if (wrong) out.push({ name: `a ${wrong} key (wrong role)`, req: withHeaders(auth(keys[wrong]!)), status: 403, code: 'FORGE_ERR_FORBIDDEN_ROLE' });
    const right = op.roles.find((r) => r !== 'admin') ?? 'admin';
    const namesTenant = Object.values(base.path).some((v) => /demo/.test(v)) || Object.values(base.query).some((v) => /demo/.test(v)) || JSON.stringify(base.body ?? '').includes('"demo"');
    if (op.allTenants || namesTenant || ['/v1/billing/vault/rotate', '/v1/billing/reports/margin'].includes(op.path)) {
      out.push({ name: 'another tenant\'s key', req: withHeaders(auth(keys[`other:${right}`]!)), status: 403, code: 'FORGE_ERR_FORBIDDEN_TENANT' });
    }
    if (namesTenant && !op.newTenant && op.path !== '/v1/logs' && op.path !== '/v1/traces') {
      const swap = (v: string) => v.replace(/demo/g, 'ghost');
      const req: Req = {
        ...base,
        path: Object.fromEntries(Object.entries(base.path).map(([k, v]) => [k, swap(v)])),
        query: Object.fromEntries(Object.entries(base.query).map(([k, v]) => [k, swap(v)])),
        body: base.body === undefined ? undefined : JSON.parse(swap(JSON.stringify(base.body))),
      };
      out.push({ name: 'an unknown tenant', req, status: 404, code: 'FORGE_ERR_TENANT_NOT_FOUND' });
    }
  }
  for (const p of op.params) {
    const where = p.in;
    const set = (v: string): Req => ({ ...base, [where]: { ...base[where], [p.name]: v } });
    if (where === 'path') {
      out.push({ name: `path ${p.name} far too long`, req: set('a'.repeat(300)), status: 414, code: 'FORGE_ERR_URI_TOO_LONG' });
      bad(`path ${p.name} with control characters`, set(CONTROL), p.name);
      continue;
    }
    if (p.required) {
      const { [p.name]: _gone, ...rest } = base.query;
      bad(`query ${p.name} missing`, { ...base, query: rest }, p.name);
    }
    const types = typesOf(p.schema);
    if (types.includes('integer')) {
      bad(`query ${p.name} not a number`, set('abc'), p.name);
      bad(`query ${p.name} 1e309`, set('1e309'), p.name);
      if (p.schema.maximum !== undefined) bad(`query ${p.name} above the maximum`, set(String(p.schema.maximum + 1)), p.name);
    } else {
      bad(`query ${p.name} with control characters`, set(CONTROL), p.name);
      if (p.schema.format === 'date-time') {
        bad(`query ${p.name} in year 1`, set('0001-01-01T00:00:00Z'), p.name);
        bad(`query ${p.name} in year 9999`, set('9999-12-31T00:00:00Z'), p.name);
      }
    }
  }
  if (!op.public) bad('an unknown query field', { ...base, query: { ...base.query, sneaky: '1' } }, 'sneaky');
  const s = bodySchemaOf(op);
  if (op.bodyTypes.length > 0 || op.path === '/v1/logs' || op.path === '/v1/traces') {
    out.push({ name: 'a wrong content type', req: { ...base, headers: { ...base.headers, 'content-type': 'text/plain' }, raw: 'hello' }, status: 415, code: 'FORGE_ERR_UNSUPPORTED_MEDIA_TYPE', field: 'content-type' });
    out.push({ name: 'an oversize body', req: { ...base, raw: JSON.stringify({ pad: 'x'.repeat(BODY_LIMIT + 1) }) }, status: 413, code: 'FORGE_ERR_PAYLOAD_TOO_LARGE', field: 'body' });
    out.push({ name: 'a body that is a list', req: { ...base, body: [5] }, status: 400, code: 'FORGE_ERR_VALIDATION', field: 'body' });
  }
  if (s && typeof base.body === 'object' && base.body !== null) {
    const body = base.body as Record<string, unknown>;
    bad('an unknown body field', { ...base, body: { ...body, sneaky: 1 } }, 'sneaky');
    for (const [name, fs] of Object.entries(s.properties ?? {})) {
      if ((s.required ?? []).includes(name)) {
        const { [name]: _gone, ...rest } = body;
        bad(`body ${name} missing`, { ...base, body: rest }, name);
      }
      for (const v of badValues(fs)) {
        const req: Req = v.raw !== undefined ? { ...base, raw: JSON.stringify({ ...body, [name]: '__RAW__' }).replace('"__RAW__"', v.raw) } : { ...base, body: { ...body, [name]: v.value } };
        bad(`body ${name} ${v.what}`, req, name);
      }
    }
  }
  return out;
}

// ------------------------------------------------------------------ the suite

describe('hostile input on every operation of the OpenAPI document', () => {
  it('covers every operation, and each case gets its 4xx in the Forge shape with nothing stored', async () => {
    const ops = operations();
    expect(ops.length).toBeGreaterThanOrEqual(38);
    const failures: string[] = [];
    let total = 0;
    for (const op of ops) {
      const list = cases(op);
      const before = await fingerprint();
      for (const c of list) {
        total++;
        const res = await forge.app.inject(inject(op, c.req));
        let err: { code?: string; field?: string; message?: string } | undefined;
        try {
          err = (res.json() as { error?: typeof err }).error;
        } catch {
          err = undefined;
        }
        const where = `${op.method} ${op.path}: ${c.name}`;
        if (res.statusCode >= 500) failures.push(`${where}: ${res.statusCode} ${res.body.slice(0, 200)}`);
        else if (res.statusCode !== c.status || err?.code !== c.code) failures.push(`${where}: expected ${c.status} ${c.code}, got ${res.statusCode} ${res.body.slice(0, 200)}`);
        else if (!err.field || (c.field !== undefined && err.field !== c.field && !err.field.startsWith(`${c.field}.`) && !err.field.endsWith(`.${c.field}`))) failures.push(`${where}: expected field ${c.field ?? '(any)'}, got ${String(err.field)}`);
        else if (!(err.code! in ERRORS)) failures.push(`${where}: code ${err.code} is not in the registry`);
      }
      const after = await fingerprint();
      if (after !== before) failures.push(`${op.method} ${op.path}: the store changed`);
    }
    console.log(`hostile suite: ${ops.length} operations, ${total} cases`);
    expect(failures).toEqual([]);
  }, 60_000);
});

describe('the findings of the probe, one by one', () => {
  const admin = () => auth(keys.admin!);
  it('an estimate below one micro-dollar is refused, not admitted with nothing held', async () => {
    for (const estimated_cost_usd of [0.0000001, '0', 0]) {
      const r = await forge.app.inject({ method: 'POST', url: '/v1/admissions', headers: admin(), payload: { tenant_id: 'demo', run_id: 'r-min', task_type: 'eval', estimated_cost_usd } });
      expect(r.statusCode, r.body).toBe(400);
      expect(r.json().error).toMatchObject({ code: 'FORGE_ERR_VALIDATION', field: 'estimated_cost_usd' });
    }
  });

  it('a settle in year 9999 does not change spend', async () => {
    const a = await forge.app.inject({ method: 'POST', url: '/v1/admissions', headers: admin(), payload: { tenant_id: 'demo', run_id: 'r-late', task_type: 'eval', estimated_cost_usd: '1' } });
    expect(a.statusCode, a.body).toBe(200);
    const before = forge.guardrail.totals('tenant:demo');
    const s = await forge.app.inject({ method: 'POST', url: `/v1/admissions/${a.json().reservation_id}/settle`, headers: admin(), payload: { actual_cost_usd: '5', event_id: 'late-1', finalized_at: '9999-01-01T00:00:00Z' } });
    expect(s.statusCode).toBe(400);
    expect(s.json().error.field).toBe('finalized_at');
    expect(forge.guardrail.totals('tenant:demo')).toEqual(before);
  });

  it('a tenant is created by an admin (audited, once), then usable; before that it is 404 everywhere', async () => {
    const plans = (await forge.app.inject({ method: 'GET', url: '/v1/billing/plans', headers: admin() })).json();
    const pack = plans.credit_packs[0].id as string;
    const buy = (tenant: string) => forge.app.inject({ method: 'POST', url: `/v1/billing/tenants/${tenant}/credits/purchases`, headers: auth(keys.finance!), payload: { pack, purchase_id: `pay-${tenant}` } });
    expect((await buy('newco')).statusCode).toBe(404);
    const bound = await forge.app.inject({ method: 'POST', url: '/v1/tenants', headers: auth(keys['other:admin']!), payload: { tenant_id: 'newco', reason: 'signed the contract' } });
    expect(bound.statusCode).toBe(403);
    const made = await forge.app.inject({ method: 'POST', url: '/v1/tenants', headers: admin(), payload: { tenant_id: 'newco', reason: 'signed the contract' } });
    expect(made.statusCode, made.body).toBe(201);
    const again = await forge.app.inject({ method: 'POST', url: '/v1/tenants', headers: admin(), payload: { tenant_id: 'newco', reason: 'signed the contract' } });
    expect(again.statusCode).toBe(409);
    expect((await buy('newco')).statusCode).toBe(200);
    const list = await forge.app.inject({ method: 'GET', url: '/v1/tenants', headers: auth(keys.auditor!) });
    expect(list.json().tenants).toEqual(expect.arrayContaining(['demo', 'other', 'newco']));
    const rs = await forge.store.client.query({ query: `SELECT tenant_id, actor, reason FROM ${forge.store.database}.tenants`, format: 'JSONEachRow' });
    expect(await rs.json()).toEqual([{ tenant_id: 'newco', actor: expect.stringContaining('admin'), reason: 'signed the contract' }]);
  });

  it('/metrics needs a key bound to all tenants with a role for it', async () => {
    expect((await forge.app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(401);
    expect((await forge.app.inject({ method: 'GET', url: '/metrics', headers: auth(keys.runner!) })).statusCode).toBe(403);
    const bound = await forge.app.inject({ method: 'GET', url: '/metrics', headers: auth(keys['other:auditor']!) });
    expect(bound.statusCode).toBe(403);
    expect(bound.json().error.code).toBe('FORGE_ERR_FORBIDDEN_TENANT');
    const ok = await forge.app.inject({ method: 'GET', url: '/metrics', headers: auth(keys.auditor!) });
    expect(ok.statusCode).toBe(200);
    expect(ok.body).toMatch(/forge_/);
  });

  it('public metrics leave out every tenant-labelled series', async () => {
    const m = new ForgeMetrics();
    m.setScopeTotals('tenant:demo', { dayMicros: 5_000_000, weekMicros: 5_000_000, runMicros: 5_000_000, components: { rli: 5_000_000, gas: 0, compute: 0, storage: 0, llm: 0 } } as never);
    m.setScopeTotals('global', { dayMicros: 7_000_000, weekMicros: 7_000_000, runMicros: 7_000_000, components: { rli: 7_000_000, gas: 0, compute: 0, storage: 0, llm: 0 } } as never);
    const all = await m.render();
    const pub = await m.render({ tenantSeries: false });
    expect(all).toMatch(/scope="tenant:demo"/);
    expect(pub).not.toMatch(/tenant:demo|tenant="demo"/);
    expect(pub).toMatch(/scope="global"/);
    await m.shutdown();
  });

  it('unknown routes are 404 and known paths under another method 405, in the Forge shape', async () => {
    const nf = await forge.app.inject({ method: 'GET', url: '/v1/nothing-here', headers: admin() });
    expect(nf.statusCode).toBe(404);
    expect(nf.json().error).toMatchObject({ code: 'FORGE_ERR_NOT_FOUND', field: 'url' });
    const na = await forge.app.inject({ method: 'DELETE', url: '/v1/admissions', headers: admin() });
    expect(na.statusCode).toBe(405);
    expect(na.json().error).toMatchObject({ code: 'FORGE_ERR_METHOD_NOT_ALLOWED', field: 'method' });
    expect(na.headers.allow).toContain('POST');
  });

  it('a key name with NUL and terminal escapes is refused', async () => {
    const r = await forge.app.inject({ method: 'POST', url: '/v1/keys', headers: admin(), payload: { name: 'ops\u0000\u001b]0;pwned\u0007', roles: ['runner'] } });
    expect(r.statusCode).toBe(400);
    expect(r.json().error.field).toBe('name');
  });
});

import { isMap, isNode, LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { DEFAULT_K, thresholdsOf, type Bands, type Thresholds } from './bands.ts';
import { usdToMicros } from './money.ts';
import { GLOBAL_SCOPE, runScope, tenantScope, type ScopeKey } from './states.ts';

/**
 * Budget bands per scope from `config/pilot-budgets.yaml`. Pure: takes the file's text, returns the
 * resolved bands or an error naming the key and line. A narrower scope (tenant, run) inherits every key it
 * does not set from the wider one (global -> tenant -> run).
 */
export class BandsConfigError extends Error {
  readonly code = 'FORGE_ERR_BANDS_CONFIG';
  constructor(
    readonly file: string,
    readonly line: number | undefined,
    readonly key: string,
    readonly problem: string,
  ) {
    super(`${file}${line ? `:${line}` : ''}: ${key}: ${problem}`);
  }
}

const usd = z.union([z.number(), z.string()]).transform((v, ctx) => {
  if (typeof v === 'number' && !Number.isFinite(v)) {
    ctx.addIssue({ code: 'custom', message: 'must be a finite amount in USD' });
    return z.NEVER;
  }
  const s = String(v).trim();
  if (!/^\d+(\.\d{1,6})?$/.test(s)) {
    ctx.addIssue({ code: 'custom', message: `must be a non-negative USD amount with at most 6 decimals, got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return usdToMicros(s);
});

const BAND_KEYS = ['B_day_soft', 'B_day_hard', 'B_week_soft', 'B_week_hard', 'B_run_cap', 'B_unit_cap'] as const;

const partialBands = z
  .object({
    approved_day_usd: usd.optional(),
    approved_week_usd: usd.optional(),
    B_day_soft: usd.optional(),
    B_day_hard: usd.optional(),
    B_week_soft: usd.optional(),
    B_week_hard: usd.optional(),
    B_run_cap: usd.optional(),
    B_unit_cap: usd.optional(),
    K: z.number().int('must be a whole number').min(1, 'must be at least 1').max(10_000).optional(),
  })
  .strict();

type PartialBands = z.output<typeof partialBands>;

const scopeName = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 letters, digits, dot, dash or underscore');

const fileSchema = z
  .object({
    global: partialBands,
    tenants: z.record(scopeName, partialBands).optional(),
    runs: z.record(z.string().regex(/^[A-Za-z0-9._-]{1,64}\/[A-Za-z0-9._:-]{1,128}$/, 'must be "<tenant>/<run>"'), partialBands).optional(),
  })
  .strict();

export interface BandsBook {
  /** Resolved bands for every scope named in the file (global always). */
  explicit: ReadonlyMap<ScopeKey, Bands>;
  /** Bands for any scope: the nearest configured one (run -> tenant -> global). */
  forScope(scope: ScopeKey): Thresholds;
  /** The partial settings as written, for versioned edits. */
  raw: unknown;
}

type PartialMicros = Partial<Record<(typeof BAND_KEYS)[number], number>> & { K?: number; approved_day_usd?: number; approved_week_usd?: number };

function derive(p: PartialBands): PartialMicros {
  const out: PartialMicros = { ...p };
  // An approved budget gives soft = 80%, hard = 100% (emergency 110% is always derived from hard).
  if (p.approved_day_usd !== undefined) {
    out.B_day_hard ??= p.approved_day_usd;
    out.B_day_soft ??= Math.ceil((p.approved_day_usd * 8) / 10);
  }
  if (p.approved_week_usd !== undefined) {
    out.B_week_hard ??= p.approved_week_usd;
    out.B_week_soft ??= Math.ceil((p.approved_week_usd * 8) / 10);
  }
  return out;
}

function merge(base: PartialMicros, over: PartialMicros): PartialMicros {
  const out: PartialMicros = { ...base };
  for (const [k, v] of Object.entries(over)) if (v !== undefined) (out as Record<string, number>)[k] = v;
  return out;
}

function complete(p: PartialMicros, where: string[], fail: (path: string[], msg: string) => never): Bands {
  for (const k of BAND_KEYS) if (p[k] === undefined) fail([...where, k], 'is required (set it here or in a wider scope)');
  const b: Bands = {
    daySoft: p.B_day_soft!,
    dayHard: p.B_day_hard!,
    weekSoft: p.B_week_soft!,
    weekHard: p.B_week_hard!,
    runCap: p.B_run_cap!,
    unitCap: p.B_unit_cap!,
    k: p.K ?? DEFAULT_K,
  };
  if (b.daySoft > b.dayHard) fail([...where, 'B_day_soft'], 'must not be above B_day_hard');
  if (b.weekSoft > b.weekHard) fail([...where, 'B_week_soft'], 'must not be above B_week_hard');
  for (const k of BAND_KEYS) if (p[k] === 0) fail([...where, k], 'must be greater than 0');
  return b;
}

/**
 * The line of a key path in a parsed YAML document, for errors that name file:line: the value's line for
 * the full path; for a missing key, the line of the nearest key that exists.
 */
export function yamlLineOf(doc: ReturnType<typeof parseDocument>, lc: LineCounter, path: readonly (string | number)[]): number | undefined {
  for (let n = path.length; n >= 1; n--) {
    const parent = n === 1 ? doc.contents : doc.getIn(path.slice(0, n - 1), true);
    if (!isMap(parent)) continue;
    const pair = parent.items.find((it) => isNode(it.key) && (it.key as { value?: unknown }).value === path[n - 1]);
    if (!pair) continue;
    const target = n === path.length && isNode(pair.value) ? pair.value : pair.key;
    if (isNode(target) && target.range) return lc.linePos(target.range[0]).line;
  }
  return undefined;
}

export function parseBandsConfig(text: string, file = 'pilot-budgets.yaml'): BandsBook {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const fail = (path: readonly (string | number)[], msg: string): never => {
    throw new BandsConfigError(file, yamlLineOf(doc, lc, path), path.join('.') || '(file)', msg);
  };
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    throw new BandsConfigError(file, e.linePos?.[0]?.line, '(yaml)', e.message.split('\n')[0] ?? 'invalid YAML');
  }
  const parsed = fileSchema.safeParse(doc.toJS());
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
    const msg = issue.code === 'unrecognized_keys' ? `unknown key(s) ${issue.keys.join(', ')}` : issue.message;
    const where = issue.code === 'unrecognized_keys' ? [...path, issue.keys[0]!] : path;
    if (issue.code === 'invalid_type' && issue.input === undefined) fail(where, 'is required');
    fail(where, msg);
  }
  const cfg = parsed.data!;
  const explicit = new Map<ScopeKey, Bands>();
  const partials = new Map<ScopeKey, PartialMicros>();
  const g = derive(cfg.global);
  partials.set(GLOBAL_SCOPE, g);
  explicit.set(GLOBAL_SCOPE, complete(g, ['global'], fail));
  for (const [tenant, p] of Object.entries(cfg.tenants ?? {})) {
    const m = merge(g, derive(p));
    partials.set(tenantScope(tenant), m);
    explicit.set(tenantScope(tenant), complete(m, ['tenants', tenant], fail));
  }
  for (const [key, p] of Object.entries(cfg.runs ?? {})) {
    const [tenant, run] = key.split('/') as [string, string];
    const m = merge(partials.get(tenantScope(tenant)) ?? g, derive(p));
    explicit.set(runScope(tenant, run), complete(m, ['runs', key], fail));
  }
  return makeBook(explicit, cfg);
}

export function makeBook(explicit: ReadonlyMap<ScopeKey, Bands>, raw: unknown): BandsBook {
  // Thresholds are derived once here; forScope runs for every scope of every task, so a run scope finds its
  // tenant's by the tenant id (no split, no key built).
  const cache = new Map<ScopeKey, Thresholds>();
  const byTenant = new Map<string, Thresholds>();
  for (const [k, b] of explicit) {
    const t = thresholdsOf(b);
    cache.set(k, t);
    if (k.startsWith('tenant:')) byTenant.set(k.slice(7), t);
  }
  const global = cache.get(GLOBAL_SCOPE);
  if (!global) throw new BandsConfigError('(bands)', undefined, 'global', 'is required');
  return {
    explicit,
    raw,
    forScope(scope: ScopeKey): Thresholds {
      const hit = cache.get(scope);
      if (hit) return hit;
      if (byTenant.size > 0 && scope.startsWith('run:')) {
        const slash = scope.indexOf('/', 4);
        return byTenant.get(slash < 0 ? scope.slice(4) : scope.slice(4, slash)) ?? global;
      }
      return global;
    },
  };
}

/** Bands from the cost model's key names with decimal-string USD values (as in the worked examples). */
export function bandsFromModelKeys(v: Record<string, string | number>): Bands {
  const p = partialBands.parse(v);
  return complete(derive(p), [], (path, msg) => {
    throw new BandsConfigError('(bands)', undefined, path.join('.'), msg);
  });
}

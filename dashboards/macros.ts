/**
 * What Grafana and the ClickHouse datasource plugin (grafana-clickhouse-datasource, SQL editor) do to a
 * panel's SQL before ClickHouse sees it, reproduced so tests and the burn page can run the very same text:
 *
 * 1. Grafana's template service replaces dashboard variables (`$name`, `${name}`, `${name:format}`,
 *    `[[name]]`) in the browser. A variable whose value is "All" with a custom all value gets that value
 *    unformatted (Grafana skips formatting of custom all values).
 * 2. The plugin backend expands its macros (pkg/macros in grafana/clickhouse-datasource, applied by
 *    sqlutil.Interpolate of grafana-plugin-sdk-go): `$__timeFilter(col)` becomes
 *    `col >= toDateTime(<from s>) AND col <= toDateTime(<to s>)`, `$__fromTime` `toDateTime(<from s>)`, ...
 *    A macro is found by `\$__name\b`; its arguments are whatever lies between the first `(` after it and the
 *    matching `)`, unless a `)` comes first. So `$__toTime` must be followed by `)` (or nothing with a
 *    parenthesis after it), or it swallows the next parenthesised expression: write `($__toTime)`.
 */

/** A variable's current value: one value, several, or "All" with the variable's custom all value. */
export type VarValue = string | readonly string[] | { readonly allValue: string };

export interface ExpandOptions {
  /** Time range start, epoch ms. */
  from: number;
  /** Time range end, epoch ms. */
  to: number;
  /** Dashboard variables by name. Names not listed stay in the text, as Grafana leaves unknown variables. */
  vars?: Readonly<Record<string, VarValue>>;
  /** The query interval for $__timeInterval / $__interval_s, ms (default 60 000). */
  intervalMs?: number;
}

export class MacroError extends Error {
  readonly code = 'FORGE_ERR_DASHBOARD_MACRO';
}

// Grafana's variable syntax: $var, [[var]] / [[var:fmt]], ${var} / ${var.field} / ${var:fmt}.
const VARIABLE_RE = /\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}/g;

function escapeRegex(v: string): string {
  return v.replace(/[\\^$*+?.()|[\]{}/]/g, '\\$&');
}

/** Grafana's variable formats (the subset that makes sense in SQL and PromQL). */
function formatValue(value: string | readonly string[], format: string | undefined, name: string): string {
  const many = typeof value === 'string' ? [value] : [...value];
  switch (format ?? 'glob') {
    case 'glob':
      return many.length === 1 ? (many[0] as string) : `{${many.join(',')}}`;
    case 'raw':
    case 'text':
      return many.join(',');
    case 'csv':
      return many.join(',');
    case 'singlequote':
      return many.map((v) => `'${v.replace(/'/g, "\\'")}'`).join(',');
    case 'doublequote':
      return many.map((v) => `"${v.replace(/"/g, '\\"')}"`).join(',');
    case 'sqlstring':
      return many.map((v) => `'${v.replace(/'/g, "''")}'`).join(',');
    case 'regex':
      return many.length === 1 ? escapeRegex(many[0] as string) : `(${many.map(escapeRegex).join('|')})`;
    case 'pipe':
      return many.join('|');
    default:
      throw new MacroError(`variable ${name}: format "${format}" is not supported here`);
  }
}

/** Step 1: Grafana's template variable interpolation. */
export function interpolateVariables(text: string, vars: Readonly<Record<string, VarValue>>): string {
  return text.replace(VARIABLE_RE, (match, v1: string | undefined, v2: string | undefined, fmt2: string | undefined, v3: string | undefined, field: string | undefined, fmt3: string | undefined) => {
    const name = v1 ?? v2 ?? v3;
    if (name === undefined || !Object.hasOwn(vars, name)) return match;
    if (field !== undefined) throw new MacroError(`variable ${name}: field access is not supported`);
    const value = vars[name] as VarValue;
    if (typeof value === 'object' && 'allValue' in value) return value.allValue;
    return formatValue(value as string | readonly string[], fmt2 ?? fmt3, name);
  });
}

type MacroFn = (args: string[], t: { from: number; to: number; intervalMs: number }) => string;

const sec = (ms: number): number => Math.floor(ms / 1000);
const dateTime = (ms: number): string => `toDateTime(${sec(ms)})`;
const dateTime64 = (ms: number): string => `fromUnixTimestamp64Milli(${ms})`;
const date = (ms: number): string => `toDate('${new Date(ms).toISOString().slice(0, 10)}')`;
const rfc3339 = (ms: number): string => new Date(sec(ms) * 1000).toISOString().replace('.000Z', 'Z');

function arity(name: string, args: string[], n: number): void {
  if (args.length !== n) throw new MacroError(`$__${name}: unexpected number of arguments: expected ${n} argument${n === 1 ? '' : 's'}, received ${args.length}`);
}

/** The plugin's macros (pkg/macros/macros.go) and the SDK defaults it does not override. */
const MACROS: ReadonlyArray<[string, MacroFn]> = [
  ['fromTime', (_a, t) => dateTime(t.from)],
  ['toTime', (_a, t) => dateTime(t.to)],
  ['fromTime_ms', (_a, t) => dateTime64(t.from)],
  ['toTime_ms', (_a, t) => dateTime64(t.to)],
  [
    'timeFilter',
    (a, t) => {
      arity('timeFilter', a, 1);
      return `${a[0]} >= ${dateTime(t.from)} AND ${a[0]} <= ${dateTime(t.to)}`;
    },
  ],
  [
    'timeFilter_ms',
    (a, t) => {
      arity('timeFilter_ms', a, 1);
      return `${a[0]} >= ${dateTime64(t.from)} AND ${a[0]} <= ${dateTime64(t.to)}`;
    },
  ],
  [
    'dateFilter',
    (a, t) => {
      arity('dateFilter', a, 1);
      return `${a[0]} >= ${date(t.from)} AND ${a[0]} <= ${date(t.to)}`;
    },
  ],
  [
    'dateTimeFilter',
    (a, t) => {
      arity('dateTimeFilter', a, 2);
      return `(${a[0]} >= ${date(t.from)} AND ${a[0]} <= ${date(t.to)}) AND (${a[1]} >= ${dateTime(t.from)} AND ${a[1]} <= ${dateTime(t.to)})`;
    },
  ],
  [
    'dt',
    (a, t) => {
      arity('dt', a, 2);
      return `(${a[0]} >= ${date(t.from)} AND ${a[0]} <= ${date(t.to)}) AND (${a[1]} >= ${dateTime(t.from)} AND ${a[1]} <= ${dateTime(t.to)})`;
    },
  ],
  [
    'timeInterval',
    (a, t) => {
      arity('timeInterval', a, 1);
      return `toStartOfInterval(toDateTime(${a[0]}), INTERVAL ${Math.max(Math.floor(t.intervalMs / 1000), 1)} second)`;
    },
  ],
  [
    'timeInterval_ms',
    (a, t) => {
      arity('timeInterval_ms', a, 1);
      return `toStartOfInterval(toDateTime64(${a[0]}, 3), INTERVAL ${Math.max(Math.floor(t.intervalMs), 1)} millisecond)`;
    },
  ],
  ['interval_s', (_a, t) => String(Math.max(Math.floor(t.intervalMs / 1000), 1))],
  // sqlutil defaults (the plugin does not define these names).
  [
    'timeFrom',
    (a, t) => {
      arity('timeFrom', a, 1);
      return `${a[0]} >= '${rfc3339(t.from)}'`;
    },
  ],
  [
    'timeTo',
    (a, t) => {
      arity('timeTo', a, 1);
      return `${a[0]} <= '${rfc3339(t.to)}'`;
    },
  ],
];

/**
 * sqlutil's getMacroMatches: each `$__name` occurrence with the text up to its closing parenthesis (if an
 * opening one comes before any closing one) and the raw argument text.
 */
function macroMatches(input: string, name: string): Array<[string, string | undefined]> {
  const re = new RegExp(`\\$__${name}\\b`, 'g');
  const out: Array<[string, string | undefined]> = [];
  for (let m = re.exec(input); m !== null; m = re.exec(input)) {
    const start = m.index;
    const rest = input.slice(start);
    let depth = 0;
    let end = 0;
    let argStart = 0;
    let forceBreak = false;
    for (let i = 0; i < rest.length; i++) {
      if ((depth === 0 && end > 0) || forceBreak) break;
      const ch = rest[i];
      if (ch === '(') {
        depth++;
        if (argStart === 0) argStart = i + 1;
      } else if (ch === ')') {
        if (depth === 0) {
          end = 0;
          forceBreak = true;
          continue;
        }
        depth--;
        end = i + 1;
      }
    }
    if (end === 0) end = m[0].length;
    out.push([rest.slice(0, end), argStart > 0 ? rest.slice(argStart, end - 1) : undefined]);
  }
  return out;
}

/** Step 2: the plugin's macro expansion (sqlutil.Interpolate with the plugin's macros). */
export function expandPluginMacros(sql: string, t: { from: number; to: number; intervalMs?: number }): string {
  checkRange(t.from, t.to);
  const time = { from: t.from, to: t.to, intervalMs: t.intervalMs ?? 60_000 };
  let out = sql;
  for (const [name, fn] of MACROS) {
    for (const [whole, rawArgs] of macroMatches(out, name)) {
      // As in Go: the argument text (empty without parentheses) is split on commas and trimmed, so a
      // bare `$__timeFilter` has one empty argument.
      const args = (rawArgs ?? '').split(',').map((s) => s.trim());
      out = out.split(whole).join(fn(args, time));
    }
  }
  return out;
}

/** Both steps, in Grafana's order: the SQL text the ClickHouse server receives from Grafana. */
export function expandMacros(sql: string, opts: ExpandOptions): string {
  const withVars = interpolateVariables(sql, opts.vars ?? {});
  return expandPluginMacros(withVars, { from: opts.from, to: opts.to, ...(opts.intervalMs !== undefined ? { intervalMs: opts.intervalMs } : {}) });
}

/**
 * For the embedded engine (burn page): the same expansion, except that the listed variables become
 * ClickHouse query parameters (`{tenant:String}`) instead of quoted text, so no request value is ever
 * concatenated into SQL. `${name:singlequote}` and `${name:sqlstring}` are the only allowed spellings of a
 * bound variable; anything else is an error.
 */
export function expandForEngine(
  sql: string,
  opts: ExpandOptions & { bind: Readonly<Record<string, string>> },
): { query: string; params: Record<string, string> } {
  const params: Record<string, string> = {};
  const bound = sql.replace(/\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)(?::(\w+))?\]\]|\$(\w+)/g, (match, n1: string | undefined, f1: string | undefined, n2: string | undefined, f2: string | undefined, n3: string | undefined) => {
    const name = n1 ?? n2 ?? n3;
    if (name === undefined || !Object.hasOwn(opts.bind, name)) return match;
    const fmt = f1 ?? f2;
    if (fmt !== 'singlequote' && fmt !== 'sqlstring') throw new MacroError(`variable ${name} must be written \${${name}:singlequote} to be bound as a parameter`);
    params[`v_${name}`] = opts.bind[name] as string;
    return `{v_${name}:String}`;
  });
  return { query: expandMacros(bound, opts), params };
}

function checkRange(from: number, to: number): void {
  if (!Number.isSafeInteger(from) || from < 0) throw new MacroError('from must be epoch milliseconds');
  if (!Number.isSafeInteger(to) || to < from) throw new MacroError('to must be epoch milliseconds, not before from');
}

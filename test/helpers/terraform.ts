import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { parse } from '@cdktf/hcl2json';

/**
 * terraform/ read without the terraform binary (it cannot be installed here): every .tf file parsed with
 * @cdktf/hcl2json (the HCL parser terraform uses, compiled to WebAssembly), merged per module directory, and
 * a small evaluator for the expressions the manifests are rendered with (literals, var./local./module.
 * references and string interpolation of them). Anything else evaluates to `undefined`.
 */
export const TERRAFORM_DIR = resolve(import.meta.dirname, '..', '..', 'terraform');

type Block = Record<string, unknown>;
export interface Module {
  dir: string;
  files: string[];
  variables: Record<string, Block>;
  locals: Record<string, unknown>;
  outputs: Record<string, Block>;
  /** "type.name" => the resource's block. */
  resources: Record<string, Block>;
  modules: Record<string, Block>;
  /** Top-level blocks other than those (terraform, provider). */
  other: Record<string, unknown>;
}

function tfFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.tf'))
    .map((f) => join(dir, f));
}

export function moduleDirs(root: string = TERRAFORM_DIR): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    if (tfFiles(d).length) out.push(d);
    for (const e of readdirSync(d)) if (statSync(join(d, e)).isDirectory() && !e.startsWith('.')) walk(join(d, e));
  };
  walk(root);
  return out;
}

const first = (v: unknown): Block => (Array.isArray(v) ? (v[0] as Block) : (v as Block));

export async function loadModule(dir: string): Promise<Module> {
  const m: Module = { dir, files: tfFiles(dir), variables: {}, locals: {}, outputs: {}, resources: {}, modules: {}, other: {} };
  for (const f of m.files) {
    const j = (await parse(f, readFileSync(f, 'utf8'))) as Record<string, unknown>;
    for (const [k, v] of Object.entries(j)) {
      if (k === 'variable') for (const [n, b] of Object.entries(v as Block)) m.variables[n] = first(b);
      else if (k === 'output') for (const [n, b] of Object.entries(v as Block)) m.outputs[n] = first(b);
      else if (k === 'module') for (const [n, b] of Object.entries(v as Block)) m.modules[n] = first(b);
      else if (k === 'locals') for (const l of v as Block[]) Object.assign(m.locals, l);
      else if (k === 'resource' || k === 'data') {
        for (const [type, byName] of Object.entries(v as Block)) for (const [n, b] of Object.entries(byName as Block)) m.resources[`${k === 'data' ? 'data.' : ''}${type}.${n}`] = first(b);
      } else m.other[k] = v;
    }
  }
  return m;
}

export async function loadAll(root: string = TERRAFORM_DIR): Promise<Map<string, Module>> {
  const out = new Map<string, Module>();
  for (const d of moduleDirs(root)) out.set(d, await loadModule(d));
  return out;
}

/** Every string in a parsed block, with the path it was found at. */
export function strings(v: unknown, path = ''): Array<{ path: string; value: string }> {
  if (typeof v === 'string') return [{ path, value: v }];
  if (Array.isArray(v)) return v.flatMap((x, i) => strings(x, `${path}[${i}]`));
  if (v && typeof v === 'object') return Object.entries(v).flatMap(([k, x]) => strings(x, path ? `${path}.${k}` : k));
  return [];
}

/** The module directory a `module` block's source names (local sources only). */
export function sourceDir(parent: Module, call: Block): string {
  return resolve(parent.dir, String(call.source));
}

/** Where a module is called from: [parent module, call name, call block]. */
export function callerOf(all: Map<string, Module>, dir: string): [Module, string, Block] | undefined {
  for (const p of all.values()) for (const [n, c] of Object.entries(p.modules)) if (sourceDir(p, c) === dir) return [p, n, c];
  return undefined;
}

/**
 * Evaluates an expression as parsed by hcl2json in module `m`, with `path.module` = the module's directory
 * and `extra` for names such as each.value. Values of variables come from the calling module's argument, or
 * the variable's default.
 */
export function evaluate(all: Map<string, Module>, m: Module, expr: unknown, extra: Record<string, unknown> = {}): unknown {
  if (typeof expr !== 'string') return expr;
  const whole = /^\$\{([^{}]+)\}$/.exec(expr);
  if (whole) return ref(all, m, whole[1]!.trim(), extra);
  let failed = false;
  const s = expr.replace(/\$\{([^{}]+)\}/g, (_x, r: string) => {
    const v = ref(all, m, r.trim(), extra);
    if (v === undefined || (typeof v === 'object' && v !== null)) failed = true;
    return String(v);
  });
  return failed ? undefined : s;
}

function ref(all: Map<string, Module>, m: Module, r: string, extra: Record<string, unknown>): unknown {
  if (r in extra) return extra[r];
  if (r === 'path.module') return m.dir;
  let x = /^var\.(\w+)$/.exec(r);
  if (x) {
    const name = x[1]!;
    const caller = callerOf(all, m.dir);
    if (caller && name in caller[2]) return evaluate(all, caller[0], caller[2][name]);
    return m.variables[name]?.default;
  }
  x = /^local\.(\w+)$/.exec(r);
  if (x) return evaluate(all, m, m.locals[x[1]!], extra);
  x = /^module\.(\w+)\.(\w+)$/.exec(r);
  if (x) {
    const call = m.modules[x[1]!];
    const child = call ? all.get(sourceDir(m, call)) : undefined;
    return child ? evaluate(all, child, child.outputs[x[2]!]?.value) : undefined;
  }
  return undefined;
}

/** Terraform's templatefile for the forms the manifests use: ${name}, $${ (a literal ${), %{ if name != "" ~}...%{ endif ~}. */
export function renderTemplate(text: string, vars: Record<string, unknown>): string {
  const used = templateNames(text);
  for (const n of used) if (!(n in vars)) throw new Error(`template uses \${${n}} but templatefile is not given it`);
  return text
    .replace(/%\{ if (\w+) != "" ~\}\n([\s\S]*?)%\{ endif ~\}\n/g, (_m, n: string, body: string) => (vars[n] === '' ? '' : body))
    .replace(/(\$?)\$\{(\w+)\}/g, (m, esc: string, n: string) => (esc ? m.slice(1) : String(vars[n])));
}

/** The names a template interpolates (not the escaped $${...}); any other directive is refused. */
export function templateNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const m of text.matchAll(/(\$?)\$\{([^}]*)\}/g)) {
    if (m[1]) continue;
    if (!/^\w+$/.test(m[2]!)) throw new Error(`template interpolation \${${m[2]}} is not a plain name`);
    names.add(m[2]!);
  }
  for (const m of text.matchAll(/%\{([^}]*)\}/g)) {
    const d = m[1]!.trim();
    if (!/^if \w+ != "" ~$/.test(d) && d !== 'endif ~') throw new Error(`template directive %{${d}} is not supported by this check`);
    if (d.startsWith('if ')) names.add(d.split(' ')[1]!);
  }
  return names;
}

export interface TemplateCall {
  module: Module;
  resource: string;
  file: string;
  /** The names the call gives the template: keys of local.manifest_vars plus merge(...) extras. */
  vars: Record<string, unknown>;
}

/** Every `templatefile("${path.module}/...", local.manifest_vars | merge(local.manifest_vars, {...}))` in every module. */
export function templateCalls(all: Map<string, Module>): TemplateCall[] {
  const out: TemplateCall[] = [];
  for (const m of all.values()) {
    for (const [name, block] of Object.entries(m.resources)) {
      for (const { value } of strings(block)) {
        for (const c of value.matchAll(/templatefile\("\$\{path\.module\}\/([^"]+)", (local\.manifest_vars|merge\(local\.manifest_vars, \{([^}]*)\}\))\)/g)) {
          const base = m.locals.manifest_vars as Record<string, unknown> | undefined;
          if (!base) throw new Error(`${relative(TERRAFORM_DIR, m.dir)}: templatefile without local.manifest_vars`);
          const vars: Record<string, unknown> = {};
          for (const [k, v] of Object.entries(base)) vars[k] = evaluate(all, m, v) ?? `sample-${k}`;
          // merge extras: `shard = each.value` for a for_each over shards: the first instance.
          for (const e of (c[3] ?? '').split(',').filter((x) => x.trim())) {
            const [k, v] = e.split('=').map((x) => x.trim()) as [string, string];
            vars[k] = v === 'each.value' || v === 'each.key' ? 0 : v;
          }
          out.push({ module: m, resource: name, file: join(m.dir, c[1]!), vars });
        }
      }
    }
  }
  return out;
}

export function readIfExists(file: string): string | undefined {
  return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
}

export { dirname };

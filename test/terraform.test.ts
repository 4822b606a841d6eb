import { existsSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { getReferencesInExpression } from '@cdktf/hcl2json';
import { beforeAll, describe, expect, it } from 'vitest';
import { callerOf, evaluate, loadAll, sourceDir, strings, templateCalls, templateNames, TERRAFORM_DIR, type Module } from './helpers/terraform.ts';

// terraform/ without the terraform binary: every .tf parses (hcl2json), and every reference resolves:
// var.X to a declared variable, local.X to a local, module.M.O to a module call whose module declares output O,
// TYPE.NAME to a resource of the module; a module call passes only variables the module declares and every
// variable without a default; every file and template the configuration reads exists, and every name a
// template interpolates is given to it. README documents every root variable and output.
let all: Map<string, Module>;
const rel = (d: string) => relative(TERRAFORM_DIR, d) || '.';

beforeAll(async () => {
  all = await loadAll();
}, 60_000);

describe('terraform/', () => {
  it('has a root module and the four modules, each with variables and outputs', () => {
    expect([...all.keys()].map(rel).sort()).toEqual(['.', 'modules/clickhouse', 'modules/forge', 'modules/monitoring', 'modules/redis']);
    const root = all.get(TERRAFORM_DIR)!;
    expect(Object.keys(root.modules).sort()).toEqual(['clickhouse', 'forge', 'monitoring', 'redis']);
    expect(root.other.terraform).toBeDefined();
    expect(root.other.provider).toBeDefined();
    for (const m of all.values()) {
      expect(Object.keys(m.outputs).length, rel(m.dir)).toBeGreaterThan(0);
      for (const [n, v] of [...Object.entries(m.variables), ...Object.entries(m.outputs)]) expect(v.description, `${rel(m.dir)}: ${n} has a description`).toMatch(/\S/);
    }
  });

  it('resolves every reference in every module', async () => {
    const problems: string[] = [];
    for (const m of all.values()) {
      const declaredResources = new Set(Object.keys(m.resources));
      for (const [where, block] of [
        ...Object.entries(m.resources),
        ...Object.entries(m.modules).map(([n, b]) => [`module.${n}`, b] as const),
        ...Object.entries(m.outputs).map(([n, b]) => [`output.${n}`, b] as const),
        ...Object.entries(m.variables).map(([n, b]) => [`variable.${n}`, b] as const),
        ['locals', m.locals] as const,
      ]) {
        for (const { path, value } of strings(block)) {
          // A variable's `type` is a type expression (string, map(string)), not a reference.
          if (!value.includes('${') || (where.startsWith('variable.') && path === 'type')) continue;
          const refs = await getReferencesInExpression(join(m.dir, 'x.tf'), value);
          for (const { value: r } of refs) {
            const at = `${rel(m.dir)} ${where}.${path}: ${r}`;
            const [head, a, b] = r.split('.');
            if (head === 'var') {
              if (!(a! in m.variables)) problems.push(`${at}: no variable "${a}"`);
            } else if (head === 'local') {
              if (!(a! in m.locals)) problems.push(`${at}: no local "${a}"`);
            } else if (head === 'module') {
              const call = m.modules[a!];
              const child = call && all.get(sourceDir(m, call));
              if (!child) problems.push(`${at}: no module "${a}"`);
              else if (!(b! in child.outputs)) problems.push(`${at}: module "${a}" has no output "${b}"`);
            } else if (head === 'path' || head === 'each' || head === 'count' || head === 'terraform') {
              // built in
            } else if (/^[a-z][a-z0-9]*_\w+$/.test(head!) && a) {
              if (!declaredResources.has(`${head}.${a.replace(/\[.*$/, '')}`)) problems.push(`${at}: no resource ${head}.${a}`);
            } else if (head !== 'data' || !declaredResources.has(`data.${a}.${b}`)) {
              problems.push(`${at}: unknown reference`);
            }
          }
        }
      }
    }
    expect(problems).toEqual([]);
  }, 120_000);

  it('passes each module exactly the variables it declares, and every one without a default', () => {
    for (const m of all.values()) {
      for (const [name, call] of Object.entries(m.modules)) {
        const child = all.get(sourceDir(m, call))!;
        const passed = Object.keys(call).filter((k) => !['source', 'depends_on', 'count', 'for_each', 'providers'].includes(k));
        for (const k of passed) expect(child.variables, `module.${name} passes ${k}`).toHaveProperty(k);
        for (const [v, b] of Object.entries(child.variables)) if (!('default' in b)) expect(passed, `module.${name} must pass ${v}`).toContain(v);
      }
    }
    // Every child module is called (no dead module).
    for (const m of all.values()) if (m.dir !== TERRAFORM_DIR) expect(callerOf(all, m.dir), rel(m.dir)).toBeDefined();
  });

  it('reads only files that exist: file(), fileset() and the manifest templates', () => {
    const missing: string[] = [];
    for (const m of all.values()) {
      for (const { value } of strings([m.resources, m.modules, m.locals])) {
        for (const c of value.matchAll(/(?:file|templatefile|coalesce\(var\.\w+,)\s*\(?"\$\{path\.module\}\/([^"$]+)"/g)) {
          if (!existsSync(resolve(m.dir, c[1]!))) missing.push(`${rel(m.dir)}: ${c[1]}`);
        }
      }
      // Paths handed to child modules as variables ("${path.module}/../alerts/...").
      for (const call of Object.values(m.modules)) {
        for (const v of Object.values(call)) {
          const path = typeof v === 'string' ? /^\$\{path\.module\}\/([^"$]+)$/.exec(v)?.[1] : undefined;
          if (path && !existsSync(resolve(m.dir, path))) missing.push(`${rel(m.dir)}: ${path}`);
        }
      }
    }
    expect(missing).toEqual([]);
    const calls = templateCalls(all);
    expect(calls.length).toBeGreaterThan(20);
    for (const c of calls) {
      const text = readFileSync(c.file, 'utf8');
      for (const n of templateNames(text)) expect(c.vars, `${relative(TERRAFORM_DIR, c.file)} uses \${${n}}`).toHaveProperty(n);
    }
  });

  it('evaluates the root defaults into the values the modules get', () => {
    const root = all.get(TERRAFORM_DIR)!;
    const forge = all.get(join(TERRAFORM_DIR, 'modules/forge'))!;
    expect(evaluate(all, forge, '${var.namespace}')).toBe('forge');
    expect(evaluate(all, forge, '${var.clickhouse_url}')).toBe('http://forge-clickhouse.forge.svc.cluster.local:8123');
    expect(evaluate(all, forge, '${var.api_min_replicas}')).toBe(2);
    expect(root.variables.api_min_replicas!.default).toBeGreaterThanOrEqual(2);
  });

  it('is documented in README.md: every root variable and output', () => {
    const readme = readFileSync(join(TERRAFORM_DIR, '..', 'README.md'), 'utf8');
    const deploy = readme.slice(readme.indexOf('## Deploy'));
    expect(deploy.length).toBeGreaterThan(500);
    const root = all.get(TERRAFORM_DIR)!;
    for (const n of [...Object.keys(root.variables), ...Object.keys(root.outputs)]) expect(deploy, n).toContain(`\`${n}\``);
  });
});

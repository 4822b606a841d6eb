import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { EvalError } from './errors.ts';

const idRe = /^[A-Za-z0-9._-]{1,64}$/;
const path = z.string().regex(/^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$/, 'must be a dot path of field names');
const common = { weight: z.number().positive().max(100).default(1), critical: z.boolean().default(false) };

/** One rubric check. Deterministic ones compare the answer with the task's `expected` at `path`. */
export const checkSchema = z.discriminatedUnion('kind', [
  /** The whole answer validates against a JSON Schema (draft 2020-12 subset ajv knows). */
  z.strictObject({ kind: z.literal('schema'), schema: z.record(z.string(), z.unknown()), ...common }),
  /** Each path is present (not undefined); scores the share present. */
  z.strictObject({ kind: z.literal('fields'), paths: z.array(path).min(1), ...common }),
  /** Equal to the expected value (strings trimmed, case-insensitive). */
  z.strictObject({ kind: z.literal('equals'), path, ...common }),
  /** A number within `tolerance` (absolute) of the expected one, compared in millionths. */
  z.strictObject({ kind: z.literal('number'), path, tolerance: z.number().min(0).max(1e9).default(0), ...common }),
  /** A set of codes: scores the F1 against the expected set; passes at min_f1 (default 1). */
  z.strictObject({ kind: z.literal('codes'), path, min_f1: z.number().min(0).max(1).default(1), ...common }),
  /** Free text scored 0..1 by the LLM judge against a criterion; passes at min_score (default 0.7). */
  z.strictObject({ kind: z.literal('judge'), path, criterion: z.string().min(10).max(2000), min_score: z.number().min(0).max(1).default(0.7), ...common }),
]);

export type Check = z.output<typeof checkSchema>;

const taskSchema = z.strictObject({
  id: z.string().regex(idRe, 'must be 1-64 letters, digits, dot, dash or underscore'),
  domain: z.enum(['payer', 'provider']),
  category: z.string().regex(/^[a-z0-9_]{1,64}$/),
  title: z.string().min(1).max(200),
  prompt: z.string().min(1).max(10_000),
  /** C_rli_eval of the task, USD (decimal string): the evaluation fee in its cost event. */
  evaluation_fee_usd: z.string().regex(/^\d{1,6}(\.\d{1,6})?$/, 'must be a decimal USD amount'),
  input: z.record(z.string(), z.unknown()),
  expected: z.record(z.string(), z.unknown()),
  rubric: z.array(checkSchema).min(1),
  pass_threshold: z.number().min(0).max(1).optional(),
});

const suiteSchema = z.strictObject({
  suite: z.string().regex(idRe),
  description: z.string().default(''),
  version: z.number().int().positive(),
  /** The compute environment the cost events name (priced per hour by the collector's price book). */
  environment: z.string().regex(/^[A-Za-z0-9._:/@-]{1,128}$/),
  pass_threshold: z.number().min(0).max(1).default(0.8),
  /** Per-task wall-clock limit, ms. */
  timeout_ms: z.number().int().min(100).max(3_600_000).default(60_000),
  /** Per-task memory limit, MiB (the local executor's address-space / heap bound). */
  memory_mb: z.number().int().min(32).max(65_536).default(512),
  tasks: z.array(taskSchema).min(1),
});

export type EvalTask = z.output<typeof taskSchema> & { pass_threshold: number };
export type EvalSuite = Omit<z.output<typeof suiteSchema>, 'tasks'> & { tasks: EvalTask[] };

/** Parses a suite (YAML or JSON). Errors are FORGE_ERR_SUITE_CONFIG naming the field ("tasks[3].rubric[0].path"). */
export function parseEvalSuite(text: string, file = 'suite'): EvalSuite {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    throw new EvalError('FORGE_ERR_SUITE_CONFIG', `${file}: not YAML/JSON: ${(e as Error).message}`, { field: '(suite)' });
  }
  const r = suiteSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0]!;
    const field = i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '') || '(suite)';
    throw new EvalError('FORGE_ERR_SUITE_CONFIG', `${file}: ${field}: ${i.message}`, { field });
  }
  const seen = new Set<string>();
  for (const [i, t] of r.data.tasks.entries()) {
    if (seen.has(t.id)) throw new EvalError('FORGE_ERR_SUITE_CONFIG', `${file}: tasks[${i}].id: repeats ${t.id}`, { field: `tasks[${i}].id` });
    seen.add(t.id);
  }
  return { ...r.data, tasks: r.data.tasks.map((t) => ({ ...t, pass_threshold: t.pass_threshold ?? r.data.pass_threshold })) };
}

export function loadEvalSuite(file: string): EvalSuite {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new EvalError('FORGE_ERR_SUITE_CONFIG', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { field: 'file' });
  }
  return parseEvalSuite(text, file);
}

/** What an agent receives for one task (on stdin, and in the file FORGE_TASK_FILE names). */
export function taskInput(t: EvalTask): { task_id: string; domain: string; category: string; title: string; prompt: string; input: Record<string, unknown> } {
  return { task_id: t.id, domain: t.domain, category: t.category, title: t.title, prompt: t.prompt, input: t.input };
}

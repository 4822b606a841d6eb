import { Ajv } from 'ajv';
import type { Check, EvalTask } from './suite.ts';

/** One check's result. Scores are 0..1; `skipped` checks (no judge configured, judge down) carry no weight. */
export interface CheckResult {
  id: string;
  kind: Check['kind'];
  weight: number;
  critical: boolean;
  score: number;
  passed: boolean;
  skipped: boolean;
  detail: string;
}

export interface TaskScore {
  /** Weighted mean of the scored checks, 0..1, rounded to thousandths. */
  score: number;
  passed: boolean;
  checks: CheckResult[];
}

/** What the judge is asked about one free-text field. */
export interface JudgeRequest {
  taskId: string;
  criterion: string;
  prompt: string;
  reference: string;
  candidate: string;
}

export interface JudgeVerdict {
  score: number;
  reason: string;
}

/** The LLM judge, as scoring needs it (eval/judge.ts implements it over an OpenAI-compatible endpoint). */
export type Judge = (req: JudgeRequest) => Promise<JudgeVerdict>;

export function valueAt(obj: unknown, path: string): unknown {
  let cur = obj;
  for (const k of path.split('.')) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

const norm = (v: unknown): unknown =>
  typeof v === 'string' ? v.trim().toLowerCase() : Array.isArray(v) ? v.map(norm) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)])) : v;
const code = (v: unknown): string => String(v).trim().toUpperCase();
const millionths = (v: number): number => Math.round(v * 1e6);
const show = (v: unknown): string => (v === undefined ? '(missing)' : JSON.stringify(v)).slice(0, 200);
const textOf = (v: unknown): string => (typeof v === 'string' ? v : v === undefined ? '' : JSON.stringify(v));

const ajv = new Ajv({ allErrors: false, strict: false });
const compiled = new WeakMap<object, ReturnType<typeof ajv.compile>>();

/** Scores one deterministic check, or (judge) asks the judge. Pure apart from the judge call. */
async function runCheck(c: Check, task: EvalTask, answer: unknown, judge: Judge | undefined): Promise<Omit<CheckResult, 'id' | 'kind' | 'weight' | 'critical'>> {
  const pass = (ok: boolean, detail: string) => ({ score: ok ? 1 : 0, passed: ok, skipped: false, detail });
  switch (c.kind) {
    case 'schema': {
      let validate = compiled.get(c.schema);
      if (!validate) compiled.set(c.schema, (validate = ajv.compile(c.schema)));
      const ok = validate(answer) === true;
      return pass(ok, ok ? 'matches the schema' : `${validate.errors?.[0]?.instancePath || '(answer)'} ${validate.errors?.[0]?.message ?? 'does not match'}`);
    }
    case 'fields': {
      const missing = c.paths.filter((p) => valueAt(answer, p) === undefined);
      const score = (c.paths.length - missing.length) / c.paths.length;
      return { score, passed: missing.length === 0, skipped: false, detail: missing.length ? `missing: ${missing.join(', ')}` : 'all present' };
    }
    case 'equals': {
      const want = valueAt(task.expected, c.path);
      const got = valueAt(answer, c.path);
      const ok = JSON.stringify(norm(got) ?? null) === JSON.stringify(norm(want) ?? null) && (got !== undefined || want === undefined);
      return pass(ok, ok ? `${c.path} = ${show(got)}` : `${c.path}: expected ${show(want)}, got ${show(got)}`);
    }
    case 'number': {
      const want = Number(valueAt(task.expected, c.path));
      const raw = valueAt(answer, c.path);
      const got = typeof raw === 'number' ? raw : typeof raw === 'string' && /^-?\d+(\.\d+)?$/.test(raw.trim()) ? Number(raw) : NaN;
      const ok = Number.isFinite(got) && Math.abs(millionths(got) - millionths(want)) <= millionths(c.tolerance);
      return pass(ok, `${c.path}: expected ${want} ± ${c.tolerance}, got ${show(raw)}`);
    }
    case 'codes': {
      const want = new Set(((valueAt(task.expected, c.path) as unknown[] | undefined) ?? []).map(code));
      const raw = valueAt(answer, c.path);
      if (!Array.isArray(raw)) return pass(false, `${c.path}: expected a list, got ${show(raw)}`);
      const got = new Set(raw.map(code));
      const hit = [...got].filter((x) => want.has(x)).length;
      const f1 = want.size === 0 && got.size === 0 ? 1 : hit === 0 ? 0 : (2 * hit) / (want.size + got.size);
      const missing = [...want].filter((x) => !got.has(x));
      const extra = [...got].filter((x) => !want.has(x));
      const detail = `${c.path}: F1 ${f1.toFixed(3)}${missing.length ? `; missing ${missing.join(', ')}` : ''}${extra.length ? `; unexpected ${extra.join(', ')}` : ''}`;
      return { score: f1, passed: f1 >= c.min_f1, skipped: false, detail };
    }
    case 'judge': {
      const candidate = textOf(valueAt(answer, c.path));
      if (!candidate.trim()) return pass(false, `${c.path}: no text to judge`);
      if (!judge) return { score: 0, passed: true, skipped: true, detail: 'skipped: no judge configured (FORGE_JUDGE_BASE_URL)' };
      try {
        const v = await judge({ taskId: task.id, criterion: c.criterion, prompt: task.prompt, reference: textOf(valueAt(task.expected, c.path)), candidate });
        return { score: v.score, passed: v.score >= c.min_score, skipped: false, detail: `judge ${v.score.toFixed(2)}: ${v.reason.slice(0, 300)}` };
      } catch (e) {
        // The judge's outage is not the agent's failure: the check is left out, and says why.
        return { score: 0, passed: true, skipped: true, detail: `skipped: judge unavailable: ${(e as Error).message.slice(0, 200)}` };
      }
    }
  }
}

/**
 * Scores an answer against a task's rubric. `answer` undefined (no output: crash, timeout) fails every
 * check without asking the judge. Passed: weighted score >= the task's threshold and no critical check failed.
 */
export async function scoreTask(task: EvalTask, answer: unknown, judge?: Judge): Promise<TaskScore> {
  const checks: CheckResult[] = [];
  for (const [i, c] of task.rubric.entries()) {
    const id = `${i}:${c.kind}${'path' in c ? `:${c.path}` : ''}`;
    const base = { id, kind: c.kind, weight: c.weight, critical: c.critical };
    if (answer === undefined) checks.push({ ...base, score: 0, passed: false, skipped: false, detail: 'no answer' });
    else checks.push({ ...base, ...(await runCheck(c, task, answer, judge)) });
  }
  const scored = checks.filter((c) => !c.skipped);
  const weight = scored.reduce((s, c) => s + c.weight, 0);
  const score = weight === 0 ? 0 : Math.round((scored.reduce((s, c) => s + c.weight * c.score, 0) / weight) * 1000) / 1000;
  const passed = answer !== undefined && weight > 0 && score >= task.pass_threshold && !scored.some((c) => c.critical && !c.passed);
  return { score, passed, checks };
}

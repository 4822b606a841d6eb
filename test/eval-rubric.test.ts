import { describe, expect, it } from 'vitest';
import { EvalError, loadEvalSuite, openAiJudge, parseEvalSuite, scoreTask } from '../eval/index.ts';
import { HttpReceiver } from './helpers/http-receiver.ts';

// Rubric scoring and the suite file, without services (the judge's endpoint is a loopback stand-in).
const SUITE = loadEvalSuite('config/eval/healthcare-v1.yaml');
const task = (id: string) => SUITE.tasks.find((t) => t.id === id)!;

describe('healthcare-v1 and rubric scoring', () => {
  it('holds 40 tasks, 20 payer and 20 provider, each scoring 1 against its own expected answer', async () => {
    expect(SUITE.tasks.length).toBe(40);
    expect(SUITE.tasks.filter((t) => t.domain === 'payer').length).toBe(20);
    for (const t of SUITE.tasks) {
      const s = await scoreTask(t, t.expected);
      expect(s.passed, t.id).toBe(true);
      expect(s.checks.filter((c) => !c.skipped).every((c) => c.score === 1), t.id).toBe(true);
    }
  });

  it('numbers within tolerance pass, outside fail; codes score F1; a critical miss fails the task whatever its score', async () => {
    const t = task('payer-01-claim-adjudication');
    const e = t.expected as { allowed_usd: number; decision: string };
    const near = await scoreTask(t, { ...t.expected, allowed_usd: e.allowed_usd + 0.01 });
    expect(near.passed).toBe(true);
    const far = await scoreTask(t, { ...t.expected, allowed_usd: e.allowed_usd + 0.02 });
    expect(far.checks.find((c) => c.id === '3:number:allowed_usd')).toMatchObject({ passed: false, score: 0 });
    const wrongDecision = await scoreTask(t, { ...t.expected, decision: e.decision === 'deny' ? 'approve' : 'deny' });
    expect(wrongDecision.score).toBeGreaterThanOrEqual(t.pass_threshold);
    expect(wrongDecision.passed).toBe(false);
    const coding = task('provider-01-coding');
    const icd = (coding.expected as { icd10: string[] }).icd10;
    const partial = await scoreTask(coding, { ...coding.expected, icd10: [...icd.slice(1), 'Z99.9'] });
    // One of three codes swapped for a wrong one: F1 = 2 x 2 / (3 + 3).
    expect(icd.length).toBe(3);
    expect(partial.checks[0]!.passed).toBe(false);
    expect(partial.checks[0]!.score).toBeCloseTo(2 / 3, 9);
  });

  it('judge checks: skipped without a judge, skipped (not failed) when the judge answers garbage or an error', async () => {
    const t = task('payer-11-denial-appeal');
    expect((await scoreTask(t, t.expected)).checks.find((c) => c.kind === 'judge')).toMatchObject({ skipped: true, detail: expect.stringMatching(/no judge configured/) as unknown });
    const judge = await HttpReceiver.start({ ok: { status: 200, contentType: 'application/json', body: () => JSON.stringify({ choices: [{ message: { content: 'I think it is fine' } }] }) } });
    try {
      const j = openAiJudge({ baseUrl: judge.url, apiKey: '', model: 'm', timeoutMs: 5000 });
      const garbage = await scoreTask(t, t.expected, j);
      expect(garbage.checks.find((c) => c.kind === 'judge')).toMatchObject({ skipped: true, detail: 'skipped: judge unavailable: the judge did not answer a JSON verdict' });
      expect(garbage.passed).toBe(true);
      judge.failNext(1);
      const down = await scoreTask(t, t.expected, j);
      expect(down.checks.find((c) => c.kind === 'judge')?.detail).toBe('skipped: judge unavailable: judge answered HTTP 500');
    } finally {
      await judge.close();
    }
  });

  it('a bad suite file is refused naming the field', () => {
    const bad = 'suite: s\nversion: 1\nenvironment: cpu\ntasks:\n  - id: t1\n    domain: payer\n    category: c\n    title: T\n    prompt: P\n    evaluation_fee_usd: "0.1"\n    input: {}\n    expected: {}\n    rubric:\n      - kind: number\n        path: "a..b"\n';
    expect(() => parseEvalSuite(bad)).toThrow(EvalError);
    try {
      parseEvalSuite(bad);
    } catch (e) {
      expect((e as EvalError).field).toBe('tasks[0].rubric[0].path');
    }
  });
});

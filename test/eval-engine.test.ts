import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddedEvalEngine } from '../cli/eval-engine.ts';
import { startForge, type RunningForge } from '../cli/forge-process.ts';
import {
  JUDGE_SYSTEM_PROMPT,
  loadEvalSuite,
  networkIsolationAvailable,
  openAiJudge,
  packAgentDir,
  REFERENCE_AGENT_DIR,
  writeZip,
  type EvalSuite,
} from '../eval/index.ts';
import { eventComponents } from '../store/index.ts';
import { HttpReceiver } from './helpers/http-receiver.ts';

// The eval engine end to end on an embedded Forge (chdb store, guardrail, collector over loopback HTTP, real
// child processes): the reference agent over the 40 healthcare tasks, broken agents, a halt, the judge.
const dir = mkdtempSync(join(tmpdir(), 'forge-eval-engine-'));
const SUITE = loadEvalSuite('config/eval/healthcare-v1.yaml');
const KNOWN_FAILURES = ['payer-17-eligibility', 'provider-02-coding', 'provider-04-coding', 'provider-18-note-summary', 'provider-20-note-summary'];
let forge: RunningForge;
const keys: Record<string, string> = {};
const errors: string[] = [];

const agentZip = (source: string) => writeZip([{ name: 'forge-agent.json', data: JSON.stringify({ command: ['node', 'agent.mjs'] }) }, { name: 'agent.mjs', data: source }]);
const subset = (ids: string[], over: Partial<EvalSuite> = {}): EvalSuite => ({ ...SUITE, ...over, tasks: SUITE.tasks.filter((t) => ids.includes(t.id)) });
const engine = (tenant: string, extra: Partial<Parameters<typeof embeddedEvalEngine>[1]> = {}) =>
  embeddedEvalEngine(forge, { apiKey: keys[`runner:${tenant}`]!, environment: SUITE.environment, onError: (e, w) => errors.push(`${w}: ${String(e)}`), ...extra });

beforeAll(async () => {
  writeFileSync(
    join(dir, 'bands.yaml'),
    'global:\n  approved_day_usd: 1000\n  approved_week_usd: 5000\n  B_run_cap: 10000\n  B_unit_cap: 25\ntenants:\n  lab: {}\n  broken: {}\n  other: {}\n  judged: {}\n  tight:\n    B_run_cap: 0.35\n',
  );
  forge = await startForge({
    env: { ...process.env, FORGE_DATA_DIR: join(dir, 'data'), FORGE_PORT: '0', FORGE_BUDGETS_FILE: join(dir, 'bands.yaml'), FORGE_PRICING_FILE: 'config/pricing.yaml', FORGE_LOG_LEVEL: 'silent', FORGE_FLUSH_INTERVAL_MS: '10' },
    log: (l) => errors.push(l),
  });
  for (const t of ['lab', 'broken', 'tight', 'judged', 'other']) {
    keys[`runner:${t}`] = (await forge.keys.create({ name: `runner-${t}`, roles: ['runner'], tenantId: t })).key;
    keys[`finance:${t}`] = (await forge.keys.create({ name: `finance-${t}`, roles: ['finance'], tenantId: t })).key;
  }
}, 60_000);

afterAll(async () => {
  await forge?.close();
  rmSync(dir, { recursive: true, force: true });
});

const api = async (method: 'GET' | 'POST', url: string, key: string, payload?: unknown) => {
  const r = await forge.app.inject({ method, url, headers: { authorization: `Bearer ${key}` }, ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }) });
  return { status: r.statusCode, body: r.json<Record<string, unknown>>() };
};

describe('eval engine: the reference agent over healthcare-v1', () => {
  it('passes 35 of 40, records one cost event per task, and a re-run of the run id counts nothing twice', async () => {
    const agent = await forge.agents.put('lab', { kind: 'zip', name: 'reference-agent', bytes: packAgentDir(REFERENCE_AGENT_DIR) });
    const report = await engine('lab').run({ tenantId: 'lab', runId: 'ref-1', suite: SUITE, agentId: agent.agent_id, concurrency: 2, publish: true });
    expect(report).toMatchObject({ status: 'finished', tasksTotal: 40, tasksRun: 40, passed: 35, resumed: 0, passRate: 0.875 });
    const tasks = await forge.evalResults.tasks('lab', 'ref-1');
    expect(tasks.filter((t) => !t.passed).map((t) => t.taskId).sort()).toEqual(KNOWN_FAILURES);
    expect(tasks.find((t) => t.taskId === 'provider-02-coding')?.checks.find((c) => c.kind === 'codes' && !c.passed)?.detail).toMatch(/unexpected R07\.9/);

    const events = await forge.store.listEvents({ tenantId: 'lab', runId: 'ref-1' }, { from: Date.now() - 3_600_000, to: Date.now() + 60_000 });
    expect(events.length).toBe(40);
    expect(events.filter((e) => e.status === 'success').length).toBe(35);
    expect(events.every((e) => eventComponents(e).rli === 100_000)).toBe(true);
    const stored = events.reduce((s, e) => s + e.totalMicros, 0);
    expect(report.totalCostMicros).toBe(stored);
    expect(report.costPerSuccessMicros).toBe(Math.floor(stored / 35));
    // The guard's run spend is the events' totals less the storage share (storage burns in the global scope).
    const runSpend = stored - events.reduce((s, e) => s + eventComponents(e).storage, 0);
    expect(forge.guardrail.totals('run:lab/ref-1').runMicros).toBe(runSpend);

    const again = await engine('lab').run({ tenantId: 'lab', runId: 'ref-1', suite: SUITE, agentId: agent.agent_id });
    expect(again).toMatchObject({ resumed: 40, passed: 35, totalCostMicros: stored });
    expect((await forge.store.listEvents({ tenantId: 'lab', runId: 'ref-1' }, { from: Date.now() - 3_600_000, to: Date.now() + 60_000 })).length).toBe(40);
    expect(forge.guardrail.totals('run:lab/ref-1').runMicros).toBe(runSpend);

    const board = await api('GET', '/v1/eval/leaderboards/healthcare-v1', keys['finance:lab']!);
    expect(board.status).toBe(200);
    const rows = board.body.rows as Array<Record<string, unknown>>;
    expect(rows[0]).toMatchObject({ rank: 1, run_id: 'ref-1', agent_name: 'reference-agent', passed: 35, tasks_total: 40, pass_rate: 0.875, tenant_id: 'lab' });
    expect(rows[0]!.cost_per_success_usd).toBe((Math.floor(stored / 35) / 1e6).toFixed(6).replace(/\.?0+$/, ''));

    const view = await api('GET', '/v1/eval/runs/ref-1', keys['finance:lab']!);
    const t = (view.body.tasks as Array<Record<string, unknown>>).find((x) => x.task_id === 'payer-01-claim-adjudication')!;
    expect(t).toMatchObject({ status: 'passed', score: 1, cost_event_id: 'eval:lab:ref-1:payer-01-claim-adjudication' });
    expect((t.cost_components_usd as Record<string, string>).rli).toBe('0.1');
    // Another tenant's key sees neither the run nor the board rows.
    expect((await api('GET', '/v1/eval/runs/ref-1', keys['finance:other']!)).status).toBe(404);
    expect((await api('GET', '/v1/eval/runs/ref-1?tenant_id=lab', keys['finance:other']!)).status).toBe(403);
    expect(((await api('GET', '/v1/eval/leaderboards/healthcare-v1', keys['finance:other']!)).body.rows as unknown[]).length).toBe(0);
    // The public board lists the published run without its tenant.
    const pub = await forge.app.inject({ method: 'GET', url: '/v1/public/leaderboards/healthcare-v1' });
    const prow = (pub.json<{ rows: Array<Record<string, unknown>> }>().rows)[0]!;
    expect(prow).toMatchObject({ run_id: 'ref-1', pass_rate: 0.875 });
    expect(prow.tenant_id).toBeUndefined();
  });
});

describe('eval engine: broken agents', () => {
  const one = subset(['payer-01-claim-adjudication'], { timeout_ms: 1500, memory_mb: 96 });
  const cases: Array<[string, string, string, RegExp]> = [
    ['crash', 'process.stderr.write("boom: cannot parse\\n"); process.exit(3);', 'crash', /exit code 3/],
    ['timeout', 'setInterval(() => console.log("thinking"), 200);', 'timeout', /timed out after 1500 ms/],
    ['wrong', 'import { readFileSync } from "node:fs"; const t = JSON.parse(readFileSync(process.env.FORGE_TASK_FILE, "utf8")); console.log("FORGE_ANSWER " + JSON.stringify({ claim_id: t.input.claim.claim_id, decision: "deny" }));', 'failed', /^$/],
    ['silent', 'console.log("done, no answer");', 'no_answer', /without a FORGE_ANSWER line/],
    ['garbled', 'console.log("FORGE_ANSWER {not json");', 'bad_answer', /not JSON/],
    ['memory', 'const a = []; for (;;) a.push(Buffer.alloc(1 << 20).fill(1));', 'crash', /killed by SIGABRT|exit code/],
  ];
  for (const [name, source, status, error] of cases) {
    it(`${name}: status ${status}, score 0 or partial, not passed, its fee still recorded`, async () => {
      const agent = await forge.agents.put('broken', { kind: 'zip', name, bytes: agentZip(source) });
      const r = await engine('broken').run({ tenantId: 'broken', runId: `b-${name}`, suite: one, agentId: agent.agent_id });
      expect(r).toMatchObject({ passed: 0, tasksRun: 1, status: 'finished' });
      const [t] = await forge.evalResults.tasks('broken', `b-${name}`);
      expect(t).toMatchObject({ status, passed: false });
      expect(t!.error).toMatch(error);
      if (name === 'crash') expect(t!.logs).toContain('! boom: cannot parse');
      if (name === 'wrong') {
        expect(t!.scoreMilli).toBeGreaterThan(0);
        expect(t!.checks.find((c) => c.id.includes(':decision'))).toMatchObject({ passed: false, detail: 'decision: expected "approve", got "deny"' });
      } else expect(t!.scoreMilli).toBe(0);
      expect(t!.costTotalMicros).toBeGreaterThanOrEqual(100_000);
    });
  }

  it.skipIf(!networkIsolationAvailable())('an agent cannot reach the network (its own namespace)', async () => {
    const target = await HttpReceiver.start();
    try {
      const source = `let got = 'open'; try { await fetch(${JSON.stringify(target.url)}, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }); } catch (e) { got = 'blocked: ' + (e.cause?.code ?? e.message); } console.log('FORGE_ANSWER ' + JSON.stringify({ net: got }));`;
      const agent = await forge.agents.put('broken', { kind: 'zip', name: 'net', bytes: agentZip(source) });
      await engine('broken').run({ tenantId: 'broken', runId: 'b-net', suite: one, agentId: agent.agent_id });
      const [t] = await forge.evalResults.tasks('broken', 'b-net');
      expect((t!.answer as { net: string }).net).toMatch(/^blocked: (ENETUNREACH|ECONNREFUSED)/);
      expect(target.requests.length).toBe(0);
    } finally {
      await target.close();
    }
  });
});

describe('eval engine: the guardrail', () => {
  it('a run cap stops intake: the rest are recorded as not started, the run as halted', async () => {
    const agent = await forge.agents.put('tight', { kind: 'zip', name: 'reference-agent', bytes: packAgentDir(REFERENCE_AGENT_DIR) });
    const six = subset(SUITE.tasks.slice(0, 6).map((t) => t.id));
    const r = await engine('tight').run({ tenantId: 'tight', runId: 'capped', suite: six, agentId: agent.agent_id, concurrency: 1 });
    expect(r.status).toBe('halted');
    expect(r.tasksRun).toBeGreaterThan(0);
    expect(r.tasksRun).toBeLessThan(6);
    const tasks = await forge.evalResults.tasks('tight', 'capped');
    expect(tasks.length).toBe(6);
    expect(tasks.filter((t) => t.status === 'not_started').length).toBe(6 - r.tasksRun);
    expect(tasks.find((t) => t.status === 'not_started')?.error).toMatch(/not started/);
    expect((await forge.evalResults.run('tight', 'capped'))?.status).toBe('halted');
    const events = await forge.store.listEvents({ tenantId: 'tight', runId: 'capped' }, { from: Date.now() - 3_600_000, to: Date.now() + 60_000 });
    expect(events.length).toBe(r.tasksRun);
  });
});

describe('eval engine: the LLM judge', () => {
  it('asks an OpenAI-compatible endpoint with the criterion and the candidate, and scores with its verdict', async () => {
    const task = SUITE.tasks.find((t) => t.id === 'payer-06-prior-authorization')!;
    const criterion = (task.rubric.find((c) => c.kind === 'judge') as { criterion: string }).criterion;
    const judge = await HttpReceiver.start({
      check: ({ path, json, headers }) => {
        const b = json as { model?: string; temperature?: number; messages?: Array<{ role: string; content: string }> };
        const p: string[] = [];
        if (path !== '/v1/chat/completions') p.push(`path ${path}`);
        if (headers.authorization !== 'Bearer judge-key') p.push('no bearer key');
        if (b.model !== 'judge-model' || b.temperature !== 0) p.push('model or temperature');
        if (b.messages?.[0]?.role !== 'system' || b.messages[0].content !== JUDGE_SYSTEM_PROMPT) p.push('system prompt');
        const user = b.messages?.[1]?.content ?? '';
        if (!user.includes(`Criterion: ${criterion}`)) p.push('criterion missing');
        if (!/<<<CANDIDATE\n(Approved|Denied): the request for MRI lumbar spine/.test(user)) p.push('candidate missing');
        if (!user.includes('<<<REFERENCE\n')) p.push('reference missing');
        return p;
      },
      ok: { status: 200, contentType: 'application/json', body: () => JSON.stringify({ choices: [{ message: { role: 'assistant', content: '{"score": 0.9, "reason": "names the unmet criteria"}' } }] }) },
    });
    try {
      const agent = await forge.agents.put('judged', { kind: 'zip', name: 'reference-agent', bytes: packAgentDir(REFERENCE_AGENT_DIR) });
      const j = openAiJudge({ baseUrl: `${judge.url}/v1`, apiKey: 'judge-key', model: 'judge-model', timeoutMs: 5000 });
      await engine('judged', { judge: j }).run({ tenantId: 'judged', runId: 'j-1', suite: subset([task.id]), agentId: agent.agent_id });
      expect(judge.requests.length).toBe(1);
      expect(judge.requests[0]!.problems).toEqual([]);
      const [t] = await forge.evalResults.tasks('judged', 'j-1');
      expect(t!.checks.find((c) => c.kind === 'judge')).toMatchObject({ skipped: false, score: 0.9, passed: true, detail: 'judge 0.90: names the unmet criteria' });
    } finally {
      await judge.close();
    }
  });
});

describe('agents over HTTP', () => {
  it('uploads a ZIP as base64, lists and gets it; refuses a path escape and a bad image ref naming the field', async () => {
    const zip = packAgentDir(REFERENCE_AGENT_DIR).toString('base64');
    const made = await api('POST', '/v1/agents', keys['runner:other']!, { tenant_id: 'other', name: 'ref', kind: 'zip', zip_base64: zip });
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({ tenant: 'other', kind: 'zip', name: 'ref' });
    const again = await api('POST', '/v1/agents', keys['runner:other']!, { tenant_id: 'other', name: 'ref again', kind: 'zip', zip_base64: zip });
    expect(again.body.agent_id).toBe(made.body.agent_id);
    expect((await api('GET', '/v1/agents', keys['runner:other']!)).body.agents).toHaveLength(1);
    expect((await api('GET', `/v1/agents/${String(made.body.agent_id)}`, keys['finance:other']!)).status).toBe(200);
    expect((await api('GET', `/v1/agents/${String(made.body.agent_id)}`, keys['finance:broken']!)).status).toBe(404);

    const evil = writeZip([{ name: 'forge-agent.json', data: '{"command":["node","a.mjs"]}' }, { name: '../../a.mjs', data: 'x' }]).toString('base64');
    const bad = await api('POST', '/v1/agents', keys['runner:other']!, { tenant_id: 'other', name: 'evil', kind: 'zip', zip_base64: evil });
    expect(bad).toEqual({ status: 422, body: { error: { code: 'FORGE_ERR_AGENT_REJECTED', message: expect.stringContaining('escapes the archive') as unknown, field: 'entries[1].name' } } });
    const ref = await api('POST', '/v1/agents', keys['runner:other']!, { tenant_id: 'other', name: 'img', kind: 'image', ref: 'Not A Ref' });
    expect(ref.status).toBe(400);
    expect((ref.body.error as { field: string }).field).toBe('ref');
    expect((await api('POST', '/v1/agents', keys['runner:other']!, { tenant_id: 'lab', name: 'x', kind: 'image', ref: 'a/b' })).status).toBe(403);
    expect(errors).toEqual([]);
  });
});

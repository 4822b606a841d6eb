import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startForge, type RunningForge } from '../cli/forge-process.ts';
import { loadEvalSuite, packAgentDir, REFERENCE_AGENT_DIR, writeZip } from '../eval/index.ts';

// POST /v1/eval/runs on a whole embedded Forge (chdb store, guardrail, collector over loopback, real child
// processes): the run starts in the server's background, is followed with GET /v1/eval/runs/{id}, is scored
// and costed through the collector; bad requests are refused naming the field; the number of runs at once is
// bounded (FORGE_EVAL_MAX_RUNS=1 here) and forge.close() aborts the one in flight.
const dir = mkdtempSync(join(tmpdir(), 'forge-eval-runs-api-'));
const SUITE = loadEvalSuite('config/eval/healthcare-v1.yaml');
let forge: RunningForge;
const keys: Record<string, string> = {};
const logs: string[] = [];

beforeAll(async () => {
  writeFileSync(join(dir, 'bands.yaml'), 'global:\n  approved_day_usd: 1000\n  approved_week_usd: 5000\n  B_run_cap: 10000\n  B_unit_cap: 25\ntenants:\n  lab: {}\n  other: {}\n');
  // A test suite beside the shipped ones: three tasks of healthcare-v1 under another name (JSON is YAML).
  mkdirSync(join(dir, 'suites'));
  writeFileSync(join(dir, 'suites', 'mini.yaml'), JSON.stringify({ ...SUITE, suite: 'healthcare-mini', tasks: SUITE.tasks.slice(0, 3) }));
  forge = await startForge({
    env: {
      ...process.env,
      FORGE_DATA_DIR: join(dir, 'data'),
      FORGE_PORT: '0',
      FORGE_BUDGETS_FILE: join(dir, 'bands.yaml'),
      FORGE_PRICING_FILE: 'config/pricing.yaml',
      FORGE_LOG_LEVEL: 'silent',
      FORGE_FLUSH_INTERVAL_MS: '10',
      FORGE_EVAL_SUITES_DIR: join(dir, 'suites'),
      FORGE_EVAL_MAX_RUNS: '1',
    },
    log: (l) => logs.push(l),
  });
  for (const t of ['lab', 'other']) {
    keys[`runner:${t}`] = (await forge.keys.create({ name: `runner-${t}`, roles: ['runner'], tenantId: t })).key;
    keys[`finance:${t}`] = (await forge.keys.create({ name: `finance-${t}`, roles: ['finance'], tenantId: t })).key;
  }
  keys.all = (await forge.keys.create({ name: 'runner-all', roles: ['runner'], tenantId: null })).key;
}, 60_000);

afterAll(async () => {
  await forge?.close();
  rmSync(dir, { recursive: true, force: true });
});

type Body = Record<string, unknown> & { error?: { code: string; field?: string } };
const api = async (method: 'GET' | 'POST', url: string, key: string, payload?: unknown) => {
  const r = await forge.app.inject({ method, url, headers: { authorization: `Bearer ${key}` }, ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }) });
  return { status: r.statusCode, body: r.json<Body>() };
};

async function upload(tenant: string, name: string, bytes: Buffer): Promise<string> {
  const r = await api('POST', '/v1/agents', keys[`runner:${tenant}`]!, { tenant_id: tenant, name, kind: 'zip', zip_base64: bytes.toString('base64') });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body.agent_id as string;
}

/**
 * POST /v1/eval/runs, again while the answer is 409 or 429: a run whose results say finished still holds its
 * place in this process for the moment it revokes its temporary key.
 */
async function start(key: string, body: unknown) {
  let r = await api('POST', '/v1/eval/runs', key, body);
  for (let i = 0; i < 50 && (r.status === 409 || r.status === 429); i++) {
    await new Promise((res) => setTimeout(res, 100));
    r = await api('POST', '/v1/eval/runs', key, body);
  }
  return r;
}

interface RunView {
  run: { status: string; tasks_total: number; reason: string };
  tasks: Array<{ task_id: string; status: string; score: number; passed: boolean; cost_event_id: string; cost_total_usd: string; cost_components_usd: Record<string, string> }>;
}

async function finished(tenant: string, runId: string): Promise<RunView> {
  for (let i = 0; i < 600; i++) {
    const r = await api('GET', `/v1/eval/runs/${encodeURIComponent(runId)}`, keys[`runner:${tenant}`]!);
    if (r.status === 200 && (r.body as unknown as RunView).run.status !== 'running') return r.body as unknown as RunView;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`run ${runId} did not finish`);
}

describe('POST /v1/eval/runs', () => {
  let agentId: string;

  it('starts a run in the background: 202 with the run view address; the tasks are scored and costed; a re-post resumes it', async () => {
    agentId = await upload('lab', 'reference-agent', packAgentDir(REFERENCE_AGENT_DIR));
    const r = await api('POST', '/v1/eval/runs', keys['runner:lab']!, { suite: 'healthcare-mini', agent_id: agentId, run_id: 'web-1', concurrency: 2 });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect(r.body).toEqual({ run_id: 'web-1', status: 'running', run_url: '/eval/run?tenant=lab&run=web-1' });

    const view = await finished('lab', 'web-1');
    expect(view.run).toMatchObject({ status: 'finished', tasks_total: 3 });
    expect(view.tasks.map((t) => t.task_id).sort()).toEqual(SUITE.tasks.slice(0, 3).map((t) => t.id).sort());
    for (const t of view.tasks) {
      expect(t.status).not.toBe('not_started');
      expect(t.score).toBeGreaterThan(0);
      expect(t.cost_event_id).toBe(`eval:lab:web-1:${t.task_id}`);
      expect(Number(t.cost_total_usd)).toBeGreaterThan(0);
      // The evaluation fee the collector priced from the task's cost event.
      expect(Number(t.cost_components_usd.rli)).toBeGreaterThan(0);
    }
    const events = await forge.store.listEvents({ tenantId: 'lab', runId: 'web-1' }, { from: Date.now() - 3_600_000, to: Date.now() + 60_000 });
    expect(events.length).toBe(3);

    // The run's temporary runner key is revoked when it ends (right after its last result is recorded, so
    // the revocation may land a moment after the run reads as finished).
    const temporaryKeyEvents = async () =>
      (await forge.store.guardrailEvents({ scope: { tenantId: 'lab' }, from: 0, to: Date.now() + 60_000 })).filter((e) => /temporary/.test(JSON.stringify(e.details)) || /temporary/.test(e.reason)).map((e) => e.kind);
    await vi.waitFor(async () => expect((await temporaryKeyEvents()).filter((k) => k === 'key_revoked').length).toBe(1), { timeout: 10_000, interval: 100 });
    const kinds = await temporaryKeyEvents();
    expect(kinds.filter((k) => k === 'key_created').length).toBe(1);
    expect(kinds.filter((k) => k === 'key_revoked').length).toBe(1);

    // The same run id again: resumed, nothing run or charged twice.
    const again = await start(keys['runner:lab']!, { suite: 'healthcare-mini', agent_id: agentId, run_id: 'web-1' });
    expect(again.status, JSON.stringify(again.body)).toBe(202);
    const view2 = await finished('lab', 'web-1');
    expect(view2.run.status).toBe('finished');
    expect((await forge.store.listEvents({ tenantId: 'lab', runId: 'web-1' }, { from: Date.now() - 3_600_000, to: Date.now() + 60_000 })).length).toBe(3);
    // Listed with the tenant's runs.
    const list = await api('GET', '/v1/eval/runs', keys['runner:lab']!);
    expect((list.body.runs as Array<{ run_id: string }>).map((x) => x.run_id)).toContain('web-1');
  }, 120_000);

  it('refuses an unknown suite, an unknown agent, another tenant\'s agent, a run of another agent, other tenants and roles', async () => {
    const otherAgent = await upload('other', 'theirs', agentZipOf('console.log("FORGE_ANSWER {}")'));
    const cases: Array<[string, unknown, number, string, string]> = [
      ['runner:lab', { suite: 'no-such-suite', agent_id: agentId }, 404, 'FORGE_ERR_NOT_FOUND', 'suite'],
      ['runner:lab', { suite: 'healthcare-v1', agent_id: 'f'.repeat(64) }, 404, 'FORGE_ERR_NOT_FOUND', 'agent_id'],
      ['runner:lab', { suite: 'healthcare-v1', agent_id: otherAgent }, 404, 'FORGE_ERR_NOT_FOUND', 'agent_id'],
      ['runner:lab', { suite: 'healthcare-v1', agent_id: 'not-hex' }, 400, 'FORGE_ERR_VALIDATION', 'agent_id'],
      ['runner:lab', { suite: 'healthcare-v1', agent_id: agentId, concurrency: 9 }, 400, 'FORGE_ERR_VALIDATION', 'concurrency'],
      ['runner:lab', { suite: 'healthcare-v1', agent_id: agentId, run_id: 'web-1' }, 409, 'FORGE_ERR_CONFLICT', 'run_id'],
      ['runner:lab', { suite: 'healthcare-mini', agent_id: agentId, tenant_id: 'other' }, 403, 'FORGE_ERR_FORBIDDEN_TENANT', 'tenant_id'],
      ['finance:lab', { suite: 'healthcare-mini', agent_id: agentId }, 403, 'FORGE_ERR_FORBIDDEN_ROLE', ''],
      ['all', { suite: 'healthcare-mini', agent_id: agentId }, 400, 'FORGE_ERR_VALIDATION', 'tenant_id'],
    ];
    for (const [key, body, status, code, field] of cases) {
      const r = await api('POST', '/v1/eval/runs', keys[key]!, body);
      expect(r.status, `${key} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`).toBe(status);
      expect(r.body.error?.code).toBe(code);
      if (field) expect(r.body.error?.field).toBe(field);
    }
    // Nothing was started by the refused requests.
    expect((await forge.evalResults.runs('lab')).map((r) => r.runId)).toEqual(['web-1']);
  }, 60_000);

  it('a key bound to every tenant names the tenant; one run at a time here (429); close() aborts the run in flight', async () => {
    // An agent that would sleep far longer than this test may take.
    const slow = await upload('lab', 'sleeper', agentZipOf('setTimeout(() => {}, 600_000);'));
    const r = await start(keys.all!, { suite: 'healthcare-mini', agent_id: slow, run_id: 'slow-1', tenant_id: 'lab', concurrency: 1 });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect(r.body.run_url).toBe('/eval/run?tenant=lab&run=slow-1');
    const busy = await api('POST', '/v1/eval/runs', keys['runner:lab']!, { suite: 'healthcare-mini', agent_id: agentId, run_id: 'web-2' });
    expect(busy.status).toBe(429);
    expect(busy.body.error).toMatchObject({ code: 'FORGE_ERR_RATE_LIMITED' });
    const twice = await api('POST', '/v1/eval/runs', keys['runner:lab']!, { suite: 'healthcare-mini', agent_id: slow, run_id: 'slow-1' });
    expect(twice.status).toBe(409);
    expect(twice.body.error).toMatchObject({ code: 'FORGE_ERR_CONFLICT', field: 'run_id' });
    // Wait until its first task runs, then shut down: the run is aborted (the test timeout is far below the sleep).
    for (let i = 0; i < 100 && !(await forge.evalResults.run('lab', 'slow-1')); i++) await new Promise((res) => setTimeout(res, 50));
    const before = await forge.evalResults.run('lab', 'slow-1');
    expect(before?.status).toBe('running');
    await forge.close();
    expect(logs.filter((l) => /eval run/.test(l))).toEqual([]);
  }, 60_000);
});

function agentZipOf(source: string): Buffer {
  return writeZip([{ name: 'forge-agent.json', data: JSON.stringify({ command: ['node', 'agent.mjs'] }) }, { name: 'agent.mjs', data: source }]);
}

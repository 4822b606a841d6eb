import { describe, expect, it } from 'vitest';
import { fastTaskEvent, parseTaskEvent, parseTaskEventWithSchema, taskEventSchema } from '../collector/event.ts';

/*
 * The usual event is checked by a written-out copy of the schema (collector/event.ts fastTaskEvent). It must
 * accept only what the schema accepts and build the same values, and leave every rejection to the schema:
 * here the two paths meet on valid events of every form and on hostile variants of each field.
 */
const NOW = Date.UTC(2026, 2, 2, 12);
const OPTS = { now: NOW, maxFutureSkewMs: 300_000 };

const base = (): Record<string, unknown> => ({
  event_id: 'ev-1',
  tenant_id: 'acme',
  run_id: 'run-1',
  task_id: 'task/1',
  task_type: 'eval',
  model: 'gpt-4o',
  environment: 'gpu-a10',
  status: 'success',
  finalized_at: NOW - 60_000,
  rli_eval_usd: '0.10',
  gas: { gas_used: 21000, gas_price_gwei: '30', chain_id: 1 },
  task_hours: '0.25',
  llm: [{ model: 'gpt-4o', input_tokens: 1000, output_tokens: 200 }],
});

const valid: Array<Record<string, unknown>> = [
  base(),
  { ...base(), gas: undefined, model: undefined },
  (() => {
    const e = base();
    delete e.gas;
    delete e.model;
    delete e.llm;
    return e;
  })(),
  { ...base(), finalized_at: '2026-03-02T11:00:00Z', rli_eval_usd: 0.1, task_hours: 2, reported_total_usd: '9.99' },
  { ...base(), finalized_at: '2026-03-02T11:00:00.123+01:00', rli_eval_usd: '000.500', task_hours: '1.000' },
  { ...base(), gas: { gas_used: '21000.000', gas_price_gwei: '0.000000001' }, bandwidth_gb: '12.50' },
  { ...base(), bandwidth_gb: '0', user_id: 'u@example.com', agent_id: 'agent:7', skill_id: 'sk.1', key_source: 'byok' },
  { ...base(), llm: [{ model: 'claude', input_tokens: 10, output_tokens: 5, cache_read_input_tokens: 3, cache_creation_input_tokens: 0, reasoning_output_tokens: 2 }, { model: 'gpt-4o', input_tokens: 0, output_tokens: 0 }] },
  { ...base(), status: 'retried', rli_eval_usd: '1000000', task_hours: '8784', gas: { gas_used: '18446744073709551615', gas_price_gwei: '1000000000', chain_id: 2 ** 32 } },
  { ...base(), llm: [], model: '' },
];

const hostile: unknown[] = [
  null, true, false, 0, -1, 1.5, 1e21, -0, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, 1e12 + 1,
  '', ' ', ' 1', '1 ', '-1', '-0', '+1', '1e3', '1E-3', '.5', '5.', '0x10', '1,5', '00.10', '1.000', 'NaN', 'abc', 'ä', '\uD800', 'x'.repeat(200),
  '2026-03-02', '2026-03-02T11:00:00', '2026-13-40T99:99:99Z', '2099-12-31T23:59:59Z', '1999-12-31T23:59:59Z',
  [], [1], {}, { a: 1 },
];

function variants(): unknown[] {
  const out: unknown[] = [...valid, null, [], 'event', 42];
  for (const e of valid.slice(0, 3)) {
    for (const k of [...Object.keys(e), 'bandwidth_gb', 'user_id', 'key_source', 'started_at', 'ended_at', 'unknown_field', 'reported_x', '__proto__', 'constructor']) {
      const without = { ...e };
      delete without[k];
      out.push(without);
      for (const v of hostile) out.push({ ...e, [k]: v });
    }
    for (const k of ['gas_used', 'gas_price_gwei', 'chain_id', 'tx_hash', 'from', 'nonce', 'extra']) {
      const g = { gas_used: 21000, gas_price_gwei: '30', chain_id: 1 } as Record<string, unknown>;
      const without = { ...g };
      delete without[k];
      out.push({ ...e, gas: without });
      for (const v of hostile) out.push({ ...e, gas: { ...g, [k]: v } });
    }
    for (const k of ['model', 'input_tokens', 'output_tokens', 'cache_read_input_tokens', 'cache_creation_input_tokens', 'reasoning_output_tokens', 'extra']) {
      const u = { model: 'gpt-4o', input_tokens: 1000, output_tokens: 200 } as Record<string, unknown>;
      const without = { ...u };
      delete without[k];
      out.push({ ...e, llm: [without] });
      for (const v of hostile) out.push({ ...e, llm: [{ ...u, [k]: v }] });
    }
    out.push({ ...e, llm: Array.from({ length: 65 }, () => ({ model: 'm', input_tokens: 1, output_tokens: 1 })) });
    out.push({ ...e, llm: [null] });
    out.push({ ...e, gas: { tx_hash: `0x${'ab'.repeat(32)}`, chain_id: 1 } });
    out.push({ ...e, task_hours: undefined, started_at: NOW - 3_600_000, ended_at: NOW - 60_000 });
    out.push({ ...e, finalized_at: NOW + 3_600_000 });
  }
  return out;
}

describe('the fast path of event validation', () => {
  it('takes the usual events, and builds what the schema builds', () => {
    for (const e of valid) {
      const fast = fastTaskEvent(e);
      expect(fast, JSON.stringify(e)).toBeDefined();
      const schema = taskEventSchema.safeParse(Object.fromEntries(Object.entries(e).filter(([k]) => !k.startsWith('reported_'))));
      expect(schema.success).toBe(true);
      expect(fast).toEqual(schema.data);
    }
  });

  it('never accepts what the schema refuses; every outcome, rejections with their field and reason, is the schema’s', () => {
    const all = variants();
    let taken = 0;
    let refused = 0;
    for (const e of all) {
      const want = parseTaskEventWithSchema(e, OPTS);
      expect(parseTaskEvent(e, OPTS), JSON.stringify(e)).toEqual(want);
      if (e !== null && typeof e === 'object' && !Array.isArray(e) && fastTaskEvent(e as Record<string, unknown>) !== undefined) {
        taken++;
        expect(taskEventSchema.safeParse(Object.fromEntries(Object.entries(e).filter(([k]) => !k.startsWith('reported_')))).success, JSON.stringify(e)).toBe(true);
      }
      if (!want.ok) refused++;
    }
    // Both kinds were exercised: many variants went the fast way, and many were refused (by the schema).
    expect(taken).toBeGreaterThan(200);
    expect(refused).toBeGreaterThan(1000);
  });
});

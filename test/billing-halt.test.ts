import { describe, expect, it } from 'vitest';
import type { GuardState, StateChange } from '../rules/index.ts';
import { InProcessHaltBus } from '../guard/index.ts';
import {
  BillingHaltGate,
  BillingService,
  CreditLedger,
  loadPlans,
  MemoryAccountStore,
  MemoryCreditEntryStore,
  MemoryUsageSource,
} from '../billing/index.ts';

const NOW = Date.UTC(2025, 10, 15, 12);
const catalog = loadPlans('config/plans.yaml');

function change(scope: string, state: GuardState, seq: number, previous: GuardState = 'NORMAL'): StateChange {
  return { scope, state, previous, seq, at: NOW, reason: `test ${state}`, holds: [], weekMicros: 0 };
}

async function setup() {
  const bus = new InProcessHaltBus();
  const emergencies: StateChange[] = [];
  const gate = new BillingHaltGate(bus, { onEmergency: (c) => emergencies.push(c) }).start();
  const ledger = new CreditLedger(new MemoryCreditEntryStore(), { guard: gate.holdGuard() });
  await ledger.grant('tA', 'g', 1000, NOW);
  await ledger.grant('tB', 'g', 1000, NOW);
  return { bus, gate, ledger, emergencies };
}

describe('billing halt seam (in-process halt bus from runner/)', () => {
  it('refuses new credit holds for a halted tenant only, and again allows them once lifted', async () => {
    const { bus, ledger } = await setup();
    await bus.publish(change('tenant:tA', 'HARD_STOP', 1));
    expect(await ledger.hold({ owner: 'tA', holdId: 'h1', credits: 5, now: NOW })).toEqual({ ok: false, reason: 'halted', scope: 'tenant:tA', state: 'HARD_STOP' });
    expect(await ledger.hold({ owner: 'tB', holdId: 'h1', credits: 5, now: NOW })).toMatchObject({ ok: true });
    expect(await ledger.balance('tA', NOW)).toMatchObject({ available: 1000, held: 0 });
    // a WARNING does not halt; a stale replay of the old HARD_STOP does not undo the lift
    await bus.publish(change('tenant:tA', 'WARNING', 2, 'HARD_STOP'));
    expect(await ledger.hold({ owner: 'tA', holdId: 'h2', credits: 5, now: NOW })).toMatchObject({ ok: true });
    await bus.publish(change('tenant:tA', 'HARD_STOP', 1));
    expect(await ledger.hold({ owner: 'tA', holdId: 'h3', credits: 5, now: NOW })).toMatchObject({ ok: true });
  });

  it('a run halt covers that run only; a global halt covers everyone', async () => {
    const { bus, gate, ledger } = await setup();
    await bus.publish(change('run:tA/r1', 'HARD_STOP', 1));
    expect(await ledger.hold({ owner: 'tA', holdId: 'a', credits: 1, runId: 'r1', now: NOW })).toMatchObject({ ok: false, scope: 'run:tA/r1' });
    expect(await ledger.hold({ owner: 'tA', holdId: 'b', credits: 1, runId: 'r2', now: NOW })).toMatchObject({ ok: true });
    await bus.publish(change('global', 'HARD_STOP', 1));
    expect(gate.check('tB')).toMatchObject({ ok: false, scope: 'global', state: 'HARD_STOP' });
    expect(await ledger.hold({ owner: 'tB', holdId: 'c', credits: 1, now: NOW })).toMatchObject({ ok: false, reason: 'halted' });
  });

  it('EMERGENCY_STOP stops contract submissions: in-flight signals abort, new ones start aborted', async () => {
    const { bus, gate, emergencies } = await setup();
    const a = gate.submissionSignal('tA', 'r1');
    const b = gate.submissionSignal('tB', 'r1');
    const c = gate.submissionSignal('tA', 'r2');
    c.done();
    expect(gate.canSubmitContract('tA')).toEqual({ ok: true });
    await bus.publish(change('tenant:tA', 'HARD_STOP', 1));
    expect(gate.canSubmitContract('tA')).toMatchObject({ ok: false, state: 'HARD_STOP' });
    expect(a.signal.aborted).toBe(false); // a hard stop takes no new work but lets in-flight submissions finish
    await bus.publish(change('tenant:tA', 'EMERGENCY_STOP', 2, 'HARD_STOP'));
    expect(a.signal.aborted).toBe(true);
    expect(String((a.signal.reason as Error).message)).toContain('EMERGENCY_STOP on tenant:tA');
    expect(b.signal.aborted).toBe(false);
    expect(c.signal.aborted).toBe(false); // finished before
    expect(gate.submissionSignal('tA').signal.aborted).toBe(true);
    expect(emergencies.map((e) => e.scope)).toEqual(['tenant:tA']);
    await bus.publish(change('global', 'EMERGENCY_STOP', 1));
    expect(b.signal.aborted).toBe(true);
  });

  it('a gate that missed the push learns the state from the bus before deciding', async () => {
    const bus = new InProcessHaltBus();
    await bus.publish(change('tenant:tA', 'HARD_STOP', 3));
    const gate = new BillingHaltGate(bus).start();
    expect(gate.check('tA').ok).toBe(true); // nothing pushed to it yet
    const service = new BillingService({
      catalog,
      accounts: new MemoryAccountStore(),
      usage: new MemoryUsageSource(),
      ledger: new CreditLedger(new MemoryCreditEntryStore(), { guard: gate.holdGuard() }),
      gate,
    });
    const out = await service.startJob({ tenantId: 'tA', userId: 'u1', executionId: 'e1', skill: 'classify', maxTokens: 1000, now: NOW });
    expect(out).toMatchObject({ decision: 'deny', reason: 'halted' });
    const other = await service.startJob({ tenantId: 'tB', userId: 'u1', executionId: 'e2', skill: 'classify', maxTokens: 1000, now: NOW });
    expect(other).toMatchObject({ decision: 'allow' });
  });
});

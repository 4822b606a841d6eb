import type { FastifyInstance } from 'fastify';
import { buildApp, type AppParts } from '../../api/app.ts';
import { KeyStore, type Role } from '../../api/auth.ts';
import { Guardrail, type AuditRecord } from '../../guard/index.ts';
import { InProcessLedger } from '../../guard/index.ts';
import { parseBandsConfig, type BandsBook } from '../../rules/index.ts';
import { InProcessHaltBus } from '../../guard/index.ts';
import type { CostEvent } from '../../store/index.ts';
import { tempDataDir } from './store-events.ts';

export const TEST_BANDS = `global:
  B_day_soft: 800
  B_day_hard: 1000
  B_week_soft: 4000
  B_week_hard: 5000
  B_run_cap: 100000
  B_unit_cap: 100
tenants:
  acme:
    B_day_soft: 80
    B_day_hard: 100
    B_week_soft: 400
    B_week_hard: 500
    B_run_cap: 1000
    B_unit_cap: 200
`;

export interface TestApi {
  app: FastifyInstance;
  guardrail: Guardrail;
  ledger: InProcessLedger;
  bus: InProcessHaltBus;
  keys: KeyStore;
  audit: AuditRecord[];
  clock: { now: number };
  key(roles: Role[], tenantId?: string | null): string;
  close(): Promise<void>;
}

/** The whole app on the embedded in-process parts (no store), with a settable clock. */
export async function makeTestApi(opts: { bands?: BandsBook; parts?: Partial<AppParts>; ttlMs?: number } = {}): Promise<TestApi> {
  const tmp = tempDataDir('forge-api');
  const clock = { now: Date.parse('2026-03-02T09:00:00Z') };
  const keys = KeyStore.inMemory();
  const ledger = new InProcessLedger({ clock: () => clock.now });
  const bus = new InProcessHaltBus();
  const audit: AuditRecord[] = [];
  const errors: unknown[] = [];
  const guardrail = new Guardrail({
    bands: opts.bands ?? parseBandsConfig(TEST_BANDS),
    ledger,
    bus,
    now: () => clock.now,
    onChange: () => {},
    audit: async (r) => {
      audit.push(r);
    },
    onError: (e) => errors.push(e),
    reservationTtlMs: opts.ttlMs ?? 60_000,
  });
  const app = await buildApp({
    guardrail,
    keys,
    now: () => clock.now,
    onError: (e) => errors.push(e),
    ...opts.parts,
  });
  return {
    app,
    guardrail,
    ledger,
    bus,
    keys,
    audit,
    clock,
    key: (roles, tenantId = null) => keys.createNow({ name: `test-${roles.join('+')}`, roles, tenantId }).key,
    async close() {
      try {
        guardrail.close();
        await app.close();
        await ledger.close();
        await bus.close();
      } finally {
        tmp.remove();
      }
      if (errors.length > 0) throw new Error(`background errors: ${errors.map(String).join('; ')}`);
    },
  };
}

let n = 0;
/** A priced event as the collector hands it over (amounts in micros). */
export function costEvent(p: Partial<CostEvent> & { tenantId: string; totalMicros: number; eventTime: number }): CostEvent {
  n++;
  return {
    eventId: `ev-${process.pid}-${n}-${Math.random().toString(36).slice(2)}`,
    runId: 'r1',
    taskId: `task-${n}`,
    taskType: 'eval',
    model: '',
    environment: 'prod',
    status: 'success',
    ingestTime: p.eventTime,
    rliMicros: p.totalMicros,
    gasMicros: 0,
    computeMicros: 0,
    storageMicros: 0,
    llmMicros: 0,
    gasUsed: '0',
    gasPriceGwei: '0',
    nativeUsd: '0',
    gasSource: 'none',
    chainId: 0,
    txHash: '',
    taskHours: '0',
    computeHourUsd: '0',
    gbStored: '0',
    storageGbMonthUsd: '0',
    llmTokens: [],
    ...p,
  };
}

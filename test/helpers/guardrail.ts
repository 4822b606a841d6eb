import { Guardrail, type HaltBus, type LiveLedger } from '../../guard/index.ts';
import { parseBandsConfig, usdToMicros, type BandsBook } from '../../rules/index.ts';
import { guardrailAdmissionClient, type AdmissionClient } from '../../runner/index.ts';

/** Bands so wide that only a test's own halts stop anything. */
export const OPEN_BANDS: BandsBook = parseBandsConfig(
  'global:\n  B_day_soft: 900000000\n  B_day_hard: 900000001\n  B_week_soft: 900000002\n  B_week_hard: 900000003\n  B_run_cap: 900000004\n  B_unit_cap: 900000\n',
);

/**
 * The one admission rule (guard's Guardrail) over a given ledger and bus, with the runner's in-process
 * client in front: what a runner sharing a process (or Redis) with Forge gets.
 */
export function guardrailOn(o: { ledger: LiveLedger; bus: HaltBus; bands?: BandsBook; onError?: (e: unknown) => void }): { guardrail: Guardrail; admission: AdmissionClient } {
  const guardrail = new Guardrail({
    bands: o.bands ?? OPEN_BANDS,
    ledger: o.ledger,
    bus: o.bus,
    now: Date.now,
    onChange: () => {},
    audit: async () => {},
    onError: o.onError ?? (() => {}),
    reservationTtlMs: 15 * 60_000,
  });
  return { guardrail, admission: guardrailAdmissionClient(guardrail, usdToMicros) };
}

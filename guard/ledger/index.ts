export type * from './types.ts';
export { LEDGER_ERROR_CODES, LedgerError, isLedgerUnavailable, type LedgerErrorCode } from './errors.ts';
export { InProcessLedger, type InProcessLedgerOptions } from './in-process-ledger.ts';
export { RedisLedger, type CounterSeed, type RedisLedgerOptions } from './redis-ledger.ts';
export { reservationIdFor, scopesOfReservation } from './reservation-id.ts';
export { refusalOf } from './refusal.ts';

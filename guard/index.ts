/**
 * guard/: the control loop. The stateful guardrail over rules/ (live state, stop conditions, operator
 * actions), the admissions ledger (in-process, Redis), the halt bus (in-process, Redis), the hourly
 * recompute and the control state rebuilt from the logs. api/ routes over it; runner/, billing/ and
 * alerts/ consume its halt bus.
 */
export * from './errors.ts';
export * from './halt-bus.ts';
export { RedisHaltBus, type RedisHaltBusOptions } from './redis-halt-bus.ts';
export { DEFAULT_BACKOFF, FastFailConnection, backoffDelay, blockingRedis, quitRedis, redisFailureKind, subscriberRedis, type Backoff, type FastFailOptions, type ScriptDef } from './redis.ts';
export * from './ledger/index.ts';
export { changeOfAuditRow, Guardrail, usdToMicrosField, type AdmissionDecision, type IntakePort, type AuditKind, type AuditRecord, type GuardrailDeps, type HaltPort, type LogSpend, type SharedSpendPort } from './guardrail.ts';
export { capCountersFromLog, capCountersOfRows, foldControlEvents, rebuildControlState, recompute, spendFromLog, spendOfRows, type LogSource } from './rebuild.ts';
export { ControlSnapshots, type LoadedSpend, type SnapshotStore, type SpendOrigin } from './control-snapshot.ts';
export { RedisWriterSlot, type WriterSlotOptions } from './writer-slot.ts';
export { RedisSharedSpend, withoutBatch, type RedisSharedSpendOptions, type ScopeSpendSnapshot, type SeedScope, type SpendItem } from './shared-spend.ts';
export { CostBaseline, type CostBaselineOptions, type NormalCost } from './anomaly.ts';
export { ExecutionRate, INTAKE_KINDS, IntakeGate, spikeSummary, type IntakeGateDeps, type IntakeStatus, type Spike, type SpikeOptions } from './intake.ts';

/**
 * store/: the immutable cost event log on ClickHouse (embedded chdb by default, a server or cluster by URL),
 * its batch writer, totals, the audit hash chain, guardrail_events and alert_log.
 */
export type * from './cost-event.ts';
export { componentFields, eventComponents, KEY_SOURCES, microsField } from './cost-event.ts';
export { openStore } from './store.ts';
export type { Store, StoreOptions, StoredEvent } from './store.ts';
export type { ConnectionOptions } from './client.ts';
export type { BatchWriter, EventIdConflict, WriteReceipt, WriterOptions, WriterStats } from './writer.ts';
export { StoreError, STORE_ERROR_CODES, isStoreError } from './errors.ts';
export type { StoreErrorCode } from './errors.ts';
export { logScopeOf } from './scope.ts';
export type { LogScope } from './scope.ts';
export { emptyTotals, startOfUtcDay, utcDay } from './queries.ts';
export type {
  BreakdownBy,
  BreakdownRow,
  Components,
  Composition,
  DayTotals,
  HourTotals,
  RecentTaskTotals,
  RunDayTotals,
  ScopeRollup,
  TimeRange,
  Totals,
  UnitEconomics,
  WeekTotals,
} from './queries.ts';
export { addRunDays, snapshotChecksum } from './snapshots.ts';
export type { ControlSnapshot, InvalidSnapshot, LogSince, Watermark } from './snapshots.ts';
export type { BrokenReason, StreamsVerifyResult, VerifyOptions, VerifyResult } from './chain.ts';
export { CHAIN_LOGS, MAX_STREAM, parseStreamKey, streamKey } from './heads.ts';
export type { ChainHead, ChainLog } from './heads.ts';
export type { ApiKeyRecord } from './api-keys.ts';
export type {
  AlertInput,
  AlertRow,
  GuardrailEventInput,
  GuardrailEventKind,
  GuardrailEventRow,
  LogQuery,
  StopConditionCounts,
} from './guardrail-log.ts';
export { renderDdl, renderMigrations, renderRoles, loadMigrations } from './migrations.ts';
export type { DdlMode, Migration, RenderOptions, RenderedMigration } from './migrations.ts';
export { GUARDRAIL_CANONICAL_TAG, guardrailCanonicalBytes } from './guardrail-log.ts';
export { ATTRIBUTION_COLUMNS, ATTRIBUTION_SINCE, CANONICAL_VERSION, GENESIS_HASH, HASHED_COLUMNS, INSERT_COLUMNS, canonicalBytes, chainHash, componentColumn, eventCanonicalBytes, hashedCount, quantityColumn } from './rows.ts';
export { TenantTable, type TenantRecord } from './tenants.ts';
export { FOCUS_COLUMNS, focusCsv, focusRows, type FocusRow } from './focus.ts';
export { AccountTables, type AccountTokenKind, type AccountTokenRecord, type UserRecord } from './accounts.ts';

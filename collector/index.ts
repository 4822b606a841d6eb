/**
 * The collector: where every finalized task's cost enters Forge (OTLP/HTTP logs and JSON in, gas priced
 * with viem, cost computed with rules/cost-model, durable write to the store, canonical metrics out).
 */
export { collectorRoutes, type CollectorRoutesOptions } from './routes.ts';
export type { EventSink } from './sink.ts';
export { Ingestor, type IngestorDeps, type IngestResult, type RawItem, type AcceptedItem, type RejectedItem } from './ingest.ts';
export { parseTaskEvent, taskEventSchema, TASK_FINALIZED, type TaskEvent, type GasInput, type ParseOutcome, type Rejection } from './event.ts';
export { priceTaskEvent, type PriceDeps, type PriceOutcome } from './price.ts';
export { priceTaskBounds, type BoundsOutcome, type TaskBounds } from './bounds.ts';
export { loadPricing, parsePricing, computeHourUsd, type Pricing, type NativePriceConfig, type PricingEnv } from './pricing.ts';
export {
  viemChain,
  chainFromPricing,
  fixedNativePrice,
  chainlinkNativePrice,
  nativePriceFrom,
  aggregatorV3Abi,
  type ChainReader,
  type TxGas,
  type NativePriceSource,
} from './chain.ts';
export { PlatformMetrics, type PlatformMetricsOptions } from './platform-metrics.ts';
export { ForgeMetrics, OVERFLOW_LABEL, type ForgeMetricsOptions, type ScopeTotals } from './metrics.ts';
export { decodeLogsProtobuf, decodeLogsJson, recordToEvent, type OtlpLogRecord } from './otlp.ts';
export { CollectorError, PricingConfigError, UnavailableError, type CollectorErrorCode } from './errors.ts';
export { createTaskCostEmitter, taskEventId, taskCostBody, TaskCostInputError, type TaskCostEmitter, type TaskCostEmitterOptions, type TaskCostInput } from './sdk.ts';
export { httpErrorOf, fieldOfValidation, type ForgeErrorBody } from './http-errors.ts';

/**
 * runner/: the task runner that obeys guard's halt bus (BullMQ worker or in-process queue), with
 * admission, cost-event and executor seams.
 */
export * from './errors.ts';
export type * from './types.ts';
export {
  HttpAdmissionClient,
  guardrailAdmissionClient,
  type AdmissionClient,
  type AdmissionDecision,
  type AdmissionRequest,
  type GuardrailPort,
  type HttpAdmissionOptions,
  type ScopeView,
  type Settlement,
} from './admission.ts';
export { HttpEventEmitterClient, type EmitReceipt, type EventEmitterClient, type HttpEventEmitterOptions, type TaskFinalizedEvent } from './events.ts';
export { ChildProcessExecutor, type ChildProcessExecutorOptions, type ExecContext, type ExecResult, type Executor, type TaskReport } from './executor.ts';
export { TaskRunner, priceProfile, type CostAnomaly, type CostCeiling, type HandleResult, type HungTask, type IntakeControl, type TaskRunnerOptions } from './task-runner.ts';
export { BullTaskWorker, TaskQueue, DEFAULT_QUEUE, type BullQueueOptions, type BullRunnerOptions } from './bull-queue.ts';
export { InProcessTaskQueue, type InProcessQueueOptions } from './local-queue.ts';
export { SIM_TASK_SCRIPT, estimateSuite, loadSuite, parseSuite, runSuite, type RunSuiteOptions, type Suite, type SuiteProgress, type SuiteReport } from './suite.ts';
export { runnerConfigFromEnv, startRunner, type RunnerConfig, type StartedRunner } from './from-env.ts';
export { HttpAlertClient, type HttpAlertClientOptions } from './alert-client.ts';
export { startRunnerMetrics, type RunnerMetrics, type RunnerMetricsOptions } from './metrics.ts';

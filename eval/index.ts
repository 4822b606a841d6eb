/**
 * eval/: benchmark suites as data (tasks, synthetic inputs, expected outputs, rubrics, judge prompts), the
 * agent store, the eval engine that runs an agent over a suite under the guardrail, scoring, leaderboards.
 */
export * from './errors.ts';
export { readZip, writeZip, unsafePath, type ZipFile, type ZipInput, type ZipLimits } from './zip.ts';
export {
  AGENT_MANIFEST,
  AGENT_PROGRAMS,
  AgentStore,
  DEFAULT_AGENT_LIMITS,
  inspectAgentZip,
  packAgentDir,
  REFERENCE_AGENT_DIR,
  type AgentDetail,
  type AgentInput,
  type AgentLimits,
  type AgentRecord,
} from './agents.ts';
export { checkSchema, loadEvalSuite, parseEvalSuite, taskInput, type Check, type EvalSuite, type EvalTask } from './suite.ts';
export { scoreTask, valueAt, type CheckResult, type Judge, type JudgeRequest, type JudgeVerdict, type TaskScore } from './rubric.ts';
export { JUDGE_SYSTEM_PROMPT, judgeConfigFromEnv, judgePrompt, openAiJudge, type JudgeConfig } from './judge.ts';
export { LocalProcessExecutor, networkIsolationAvailable, ANSWER_PREFIX, Tail, answerOf, type AgentExecutor, type AgentJob, type AgentOutcome, type AgentRunResult, type LocalExecutorOptions } from './executor.ts';
export { EvalResults, type EvalRunRecord, type LeaderboardRow, type RunStatus, type TaskResultRecord, type TaskStatus } from './results.ts';
export { EvalEngine, evalEventId, reportLine, type CostSink, type EvalAdmissions, type EvalEngineDeps, type EvalRunOptions, type EvalRunReport } from './engine.ts';
export { EvalRunLauncher, EvalSuiteRegistry, SHIPPED_SUITES_DIR, type EvalRunLauncherOptions, type EvalRunRequest } from './launcher.ts';
export { evalPageRoutes } from './pages/plugin.ts';
export { AGENT_POD_LABEL, KubernetesJobExecutor, agentNetworkPolicy, jobNameOf, kubernetesManifests, type KubeJobApi, type KubernetesExecutorOptions } from './k8s.ts';
export { kubeJobApi } from './k8s-client.ts';

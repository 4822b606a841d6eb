import { createHash } from 'node:crypto';
import type { AgentExecutor, AgentJob, AgentRunResult } from './executor.ts';
import { ANSWER_PREFIX, answerOf, Tail } from './executor.ts';
import { writeZip } from './zip.ts';

/**
 * The Kubernetes Job executor: one Job per task (no retries, a deadline, no service-account token, non-root,
 * read-only root filesystem, all capabilities dropped, memory and CPU limits), its input in a ConfigMap (the
 * task JSON, and for ZIP agents the archive, unpacked by an init container into an emptyDir), the answer read
 * from the pod's log. Network: the pods carry the label a deny-all NetworkPolicy selects
 * (`agentNetworkPolicy`, applied once per namespace; enforced where the cluster's CNI enforces policies).
 * No cluster runs in this repository's tests: the manifests are checked against the Kubernetes API schema and
 * the executor's protocol against a stand-in of the API (test/eval-k8s.test.ts).
 */
export interface KubeJobApi {
  createConfigMap(namespace: string, body: Record<string, unknown>): Promise<void>;
  createJob(namespace: string, body: Record<string, unknown>): Promise<void>;
  /** The Job's status (succeeded / failed counts, conditions). */
  jobStatus(namespace: string, name: string): Promise<{ succeeded?: number; failed?: number; conditions?: Array<{ type: string; status: string; reason?: string; message?: string }> }>;
  /** The log of the Job's pod's `agent` container ('' when there is no pod yet). */
  podLog(namespace: string, jobName: string): Promise<string>;
  deleteJob(namespace: string, name: string): Promise<void>;
  deleteConfigMap(namespace: string, name: string): Promise<void>;
}

export interface KubernetesExecutorOptions {
  namespace: string;
  /** Image ZIP agents run in (their manifest's program must be on its PATH), e.g. node:20-bookworm-slim. */
  runtimeImage: string;
  /** Image with busybox `unzip` for the init container. Default busybox:1.36. */
  unpackImage?: string;
  /** CPU limit per task. Default "1". */
  cpu?: string;
  /** How often the Job's status is read, ms. Default 1000. */
  pollMs?: number;
  /** Labels every agent pod carries (the NetworkPolicy selects them). */
  labels?: Record<string, string>;
}

export const AGENT_POD_LABEL = 'forge.dev/eval-agent';
const label = (v: string): string => v.replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^[^A-Za-z0-9]+/, '').slice(0, 63).replace(/[^A-Za-z0-9]+$/, '');

/** Resource names of one task's Job and ConfigMap (DNS-1123: lowercase, <= 63). */
export function jobNameOf(job: AgentJob, runKey: string): string {
  return `forge-eval-${createHash('sha256').update(`${runKey}\n${job.agent.agent_id}\n${job.task.task_id}`).digest('hex').slice(0, 20)}`;
}

/** The ConfigMap and Job of one task. Pure: a function of the job and the options. */
export function kubernetesManifests(job: AgentJob, o: KubernetesExecutorOptions, runKey: string): { configMap: Record<string, unknown>; job: Record<string, unknown> } {
  const name = jobNameOf(job, runKey);
  const labels = { 'app.kubernetes.io/name': 'forge-eval-agent', 'app.kubernetes.io/managed-by': 'forge', [AGENT_POD_LABEL]: 'true', 'forge.dev/task': label(job.task.task_id), ...o.labels };
  const zip = job.agent.kind === 'zip';
  const configMap = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, namespace: o.namespace, labels },
    data: { 'task.json': JSON.stringify(job.task) },
    ...(zip ? { binaryData: { 'agent.zip': writeZip(job.files.map((f) => ({ name: f.name, data: f.data }))).toString('base64') } } : {}),
  };
  const restricted = { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] }, runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532 };
  const mounts = [
    { name: 'in', mountPath: '/forge/in', readOnly: true },
    { name: 'work', mountPath: '/work' },
    { name: 'tmp', mountPath: '/tmp' },
  ];
  const [program, ...args] = job.agent.command;
  const agent = {
    name: 'agent',
    image: zip ? o.runtimeImage : job.agent.ref,
    ...(zip ? { command: [program!.replace(/^\.\//, '/work/'), ...args] } : job.agent.command.length ? { args: job.agent.command } : {}),
    workingDir: '/work',
    env: [
      { name: 'FORGE_TASK_FILE', value: '/forge/in/task.json' },
      { name: 'FORGE_TASK_ID', value: job.task.task_id },
      { name: 'HOME', value: '/work' },
      { name: 'TMPDIR', value: '/tmp' },
      ...(zip && program === 'node' ? [{ name: 'NODE_OPTIONS', value: `--max-old-space-size=${job.memoryMb}` }] : []),
    ],
    resources: { limits: { memory: `${job.memoryMb}Mi`, cpu: o.cpu ?? '1' }, requests: { memory: `${job.memoryMb}Mi`, cpu: '100m' } },
    securityContext: restricted,
    volumeMounts: mounts,
  };
  const unpack = {
    name: 'unpack',
    image: o.unpackImage ?? 'busybox:1.36',
    command: ['unzip', '-o', '/forge/in/agent.zip', '-d', '/work'],
    resources: { limits: { memory: '64Mi', cpu: '500m' } },
    securityContext: restricted,
    volumeMounts: mounts,
  };
  const jobManifest = {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name, namespace: o.namespace, labels },
    spec: {
      backoffLimit: 0,
      activeDeadlineSeconds: Math.max(1, Math.ceil(job.timeoutMs / 1000)),
      ttlSecondsAfterFinished: 600,
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: 'Never',
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
          ...(zip ? { initContainers: [unpack] } : {}),
          containers: [agent],
          volumes: [
            { name: 'in', configMap: { name } },
            { name: 'work', emptyDir: { sizeLimit: '256Mi' } },
            { name: 'tmp', emptyDir: { sizeLimit: '64Mi' } },
          ],
        },
      },
    },
  };
  return { configMap, job: jobManifest };
}

/** Deny all ingress and egress of agent pods in the namespace (apply once). */
export function agentNetworkPolicy(namespace: string): Record<string, unknown> {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: 'forge-eval-agents-deny-all', namespace },
    spec: { podSelector: { matchLabels: { [AGENT_POD_LABEL]: 'true' } }, policyTypes: ['Ingress', 'Egress'], ingress: [], egress: [] },
  };
}

export class KubernetesJobExecutor implements AgentExecutor {
  readonly name = 'kubernetes';
  #seq = 0;
  constructor(
    private readonly api: KubeJobApi,
    private readonly o: KubernetesExecutorOptions,
  ) {}

  async run(job: AgentJob, signal: AbortSignal): Promise<AgentRunResult> {
    const started = Date.now();
    const isolation = { network: 'off' as const, memory: 'rlimit' as const };
    const { configMap, job: manifest } = kubernetesManifests(job, this.o, `${started}-${process.pid}-${this.#seq++}`);
    const name = (manifest.metadata as { name: string }).name;
    const ns = this.o.namespace;
    const out = (r: Omit<AgentRunResult, 'durationMs' | 'isolation'>): AgentRunResult => ({ ...r, durationMs: Date.now() - started, isolation });
    await this.api.createConfigMap(ns, configMap);
    try {
      await this.api.createJob(ns, manifest);
      let st: Awaited<ReturnType<KubeJobApi['jobStatus']>> = {};
      // The Job's own deadline ends it; this bound is for an API that stops answering about it.
      const giveUp = started + job.timeoutMs + 60_000;
      while (!signal.aborted && !(st.succeeded ?? 0) && !(st.failed ?? 0) && Date.now() < giveUp) {
        await new Promise((r) => setTimeout(r, this.o.pollMs ?? 1000));
        st = await this.api.jobStatus(ns, name);
      }
      const logs = new Tail();
      let answerLine: string | undefined;
      for (const line of (await this.api.podLog(ns, name).catch(() => '')).split('\n')) {
        if (line.startsWith(ANSWER_PREFIX)) answerLine = line.slice(ANSWER_PREFIX.length);
        else if (line) logs.push(line.slice(0, 2000));
      }
      const failed = st.conditions?.find((c) => c.type === 'Failed' && c.status === 'True');
      const base = { exitCode: null, signal: null, logs: logs.toString() };
      if (signal.aborted) return out({ ...base, outcome: 'aborted', error: 'stopped by a halt or by the caller' });
      if (failed?.reason === 'DeadlineExceeded') return out({ ...base, outcome: 'timeout', error: `timed out after ${job.timeoutMs} ms (Job deadline)` });
      if (failed || !(st.succeeded ?? 0)) return out({ ...base, outcome: 'crash', error: failed ? `Job failed: ${failed.reason ?? ''} ${failed.message ?? ''}`.trim() : 'the Job did not finish' });
      const answer = answerOf(answerLine);
      if (answer === undefined) return out({ ...base, exitCode: 0, outcome: 'no_answer', error: `exited 0 without a ${ANSWER_PREFIX.trim()} line` });
      if (answer instanceof Error) return out({ ...base, exitCode: 0, outcome: 'bad_answer', error: answer.message });
      return out({ ...base, exitCode: 0, outcome: 'ok', answer });
    } finally {
      await this.api.deleteJob(ns, name).catch(() => undefined);
      await this.api.deleteConfigMap(ns, name).catch(() => undefined);
    }
  }
}

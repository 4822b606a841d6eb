import * as batchV1 from 'kubernetes-models/batch/v1';
import * as networkingV1 from 'kubernetes-models/networking.k8s.io/v1';
import * as coreV1 from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { AGENT_POD_LABEL, agentNetworkPolicy, inspectAgentZip, KubernetesJobExecutor, kubernetesManifests, packAgentDir, readZip, REFERENCE_AGENT_DIR, type AgentDetail, type AgentJob, type KubeJobApi } from '../eval/index.ts';

// The Kubernetes Job executor without a cluster (none runs here): its manifests are validated against the
// Kubernetes API schema (npm kubernetes-models), and its protocol (create, watch, read the log, clean up)
// is run against a stand-in of the API that plays the Job's outcome.
const zipBytes = packAgentDir(REFERENCE_AGENT_DIR);
const zipAgent: AgentDetail = { agent_id: 'a'.repeat(64), tenant: 't', name: 'ref', kind: 'zip', size_bytes: zipBytes.length, created_at: '2026-12-01T00:00:00.000Z', command: ['node', 'agent.mjs'], ref: '', file_count: 2 };
const imageAgent: AgentDetail = { ...zipAgent, agent_id: 'b'.repeat(64), kind: 'image', command: ['--fast'], ref: 'ghcr.io/acme/claims-agent:1.2.0', file_count: 0 };
const job = (agent: AgentDetail): AgentJob => ({ agent, files: agent.kind === 'zip' ? inspectAgentZip(zipBytes).files : [], task: { task_id: 'payer-01-claim-adjudication', input: { a: 1 } }, timeoutMs: 20_500, memoryMb: 256 });
const OPTS = { namespace: 'forge-eval', runtimeImage: 'node:20-bookworm-slim', pollMs: 1 };

describe('Kubernetes Job executor: manifests', () => {
  it('a ZIP agent: ConfigMap with task and archive, Job with an unpack init container, limits, deadline, hardening; all valid', () => {
    const m = kubernetesManifests(job(zipAgent), OPTS, 'run-1');
    expect(() => new coreV1.ConfigMap(m.configMap as never).validate()).not.toThrow();
    expect(() => new batchV1.Job(m.job as never).validate()).not.toThrow();
    const spec = (m.job as { spec: { backoffLimit: number; activeDeadlineSeconds: number; template: { metadata: { labels: Record<string, string> }; spec: unknown } } }).spec;
    expect(spec.backoffLimit).toBe(0);
    expect(spec.activeDeadlineSeconds).toBe(21);
    expect(spec.template.metadata.labels[AGENT_POD_LABEL]).toBe('true');
    const pod = spec.template.spec as { automountServiceAccountToken: boolean; initContainers: Array<{ command: string[] }>; containers: Array<{ image: string; command: string[]; resources: { limits: { memory: string } }; securityContext: { readOnlyRootFilesystem: boolean; allowPrivilegeEscalation: boolean } }> };
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.initContainers[0]!.command).toEqual(['unzip', '-o', '/forge/in/agent.zip', '-d', '/work']);
    expect(pod.containers[0]).toMatchObject({ image: 'node:20-bookworm-slim', command: ['node', 'agent.mjs'], resources: { limits: { memory: '256Mi' } }, securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false } });
    // The archive in the ConfigMap is the agent's files, as the store checked them.
    const packed = Buffer.from((m.configMap as { binaryData: Record<string, string> }).binaryData['agent.zip']!, 'base64');
    expect(readZip(packed, { maxEntries: 10, maxUnpackedBytes: 1 << 20 }).map((f) => f.name).sort()).toEqual(['agent.mjs', 'forge-agent.json']);
    expect(JSON.parse((m.configMap as { data: Record<string, string> }).data['task.json']!)).toEqual(job(zipAgent).task);
  });

  it('an image agent runs its own image with its args; the deny-all NetworkPolicy selects agent pods; a bad manifest is caught', () => {
    const m = kubernetesManifests(job(imageAgent), OPTS, 'run-1');
    expect(() => new batchV1.Job(m.job as never).validate()).not.toThrow();
    const pod = (m.job as { spec: { template: { spec: { initContainers?: unknown; containers: Array<{ image: string; args: string[] }> } } } }).spec.template.spec;
    expect(pod.initContainers).toBeUndefined();
    expect(pod.containers[0]).toMatchObject({ image: 'ghcr.io/acme/claims-agent:1.2.0', args: ['--fast'] });
    const np = agentNetworkPolicy('forge-eval');
    expect(() => new networkingV1.NetworkPolicy(np as never).validate()).not.toThrow();
    expect(np).toMatchObject({ spec: { podSelector: { matchLabels: { [AGENT_POD_LABEL]: 'true' } }, policyTypes: ['Ingress', 'Egress'], egress: [] } });
    // The schema check is real: a wrong type is refused.
    const broken = { ...(m.job as object), spec: { ...(m.job as { spec: object }).spec, backoffLimit: 'none' } };
    expect(() => new batchV1.Job(broken as never).validate()).toThrow(/backoffLimit/);
  });
});

/** A stand-in of the Kubernetes API: records calls, answers the Job's status after `polls` reads. */
function fakeApi(outcome: { status: 'succeeded' | 'failed'; reason?: string; log: string; polls?: number }): KubeJobApi & { calls: string[] } {
  const calls: string[] = [];
  let reads = 0;
  return {
    calls,
    async createConfigMap(ns, body) {
      calls.push(`create configmap ${ns}/${(body.metadata as { name: string }).name}`);
    },
    async createJob(ns, body) {
      calls.push(`create job ${ns}/${(body.metadata as { name: string }).name}`);
    },
    async jobStatus() {
      if (++reads < (outcome.polls ?? 2)) return {};
      return outcome.status === 'succeeded' ? { succeeded: 1 } : { failed: 1, conditions: [{ type: 'Failed', status: 'True', reason: outcome.reason ?? 'BackoffLimitExceeded', message: 'pod failed' }] };
    },
    async podLog() {
      return outcome.log;
    },
    async deleteJob(ns, name) {
      calls.push(`delete job ${ns}/${name}`);
    },
    async deleteConfigMap(ns, name) {
      calls.push(`delete configmap ${ns}/${name}`);
    },
  };
}

describe('Kubernetes Job executor: protocol against a stand-in API', () => {
  it('reads the answer from the pod log and cleans up the Job and the ConfigMap', async () => {
    const api = fakeApi({ status: 'succeeded', log: 'reference agent: payer-01\nFORGE_ANSWER {"decision":"approve"}\n' });
    const r = await new KubernetesJobExecutor(api, OPTS).run(job(zipAgent), new AbortController().signal);
    expect(r).toMatchObject({ outcome: 'ok', answer: { decision: 'approve' }, logs: 'reference agent: payer-01\n' });
    expect(api.calls.map((c) => c.split(' ').slice(0, 2).join(' '))).toEqual(['create configmap', 'create job', 'delete job', 'delete configmap']);
    expect(new Set(api.calls.map((c) => c.split('/')[1])).size).toBe(1);
  });

  it('a Job past its deadline is a timeout, a failed pod a crash, both cleaned up', async () => {
    const late = fakeApi({ status: 'failed', reason: 'DeadlineExceeded', log: 'thinking\n' });
    expect(await new KubernetesJobExecutor(late, OPTS).run(job(imageAgent), new AbortController().signal)).toMatchObject({ outcome: 'timeout', logs: 'thinking\n' });
    const crashed = fakeApi({ status: 'failed', log: 'Traceback: boom\n' });
    const r = await new KubernetesJobExecutor(crashed, OPTS).run(job(imageAgent), new AbortController().signal);
    expect(r).toMatchObject({ outcome: 'crash', error: 'Job failed: BackoffLimitExceeded pod failed' });
    expect(crashed.calls.filter((c) => c.startsWith('delete')).length).toBe(2);
  });

  it('an abort (a halt) stops watching, reports aborted and deletes the Job', async () => {
    const api = fakeApi({ status: 'succeeded', log: '', polls: 1_000_000 });
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 20);
    const r = await new KubernetesJobExecutor(api, OPTS).run(job(zipAgent), stop.signal);
    expect(r.outcome).toBe('aborted');
    expect(api.calls.some((c) => c.startsWith('delete job'))).toBe(true);
  });
});

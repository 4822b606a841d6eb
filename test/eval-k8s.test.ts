import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as batchV1 from 'kubernetes-models/batch/v1';
import * as networkingV1 from 'kubernetes-models/networking.k8s.io/v1';
import * as coreV1 from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { AGENT_POD_LABEL, agentNetworkPolicy, inspectAgentZip, kubeJobApi, KubernetesJobExecutor, kubernetesManifests, packAgentDir, readZip, REFERENCE_AGENT_DIR, type AgentDetail, type AgentJob, type KubeJobApi } from '../eval/index.ts';

// The Kubernetes Job executor without a cluster (none runs here): its manifests are validated against the
// Kubernetes API schema (npm kubernetes-models), and its protocol (create, watch, read the log, clean up)
// is run against a stand-in of the API that plays the Job's outcome, and once through @kubernetes/client-node
// against a loopback stand-in of the API server that validates what it is sent.
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

describe('Kubernetes Job executor through @kubernetes/client-node', () => {
  it('creates, watches, reads the log and deletes through the real client against a loopback API server stand-in', async () => {
    const seen: string[] = [];
    const problems: string[] = [];
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const url = new URL(req.url ?? '/', 'http://x');
        seen.push(`${req.method} ${url.pathname}`);
        const body = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>) : undefined;
        const json = (status: number, b: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(b));
        // The API server's part: what is created must be a valid object of its kind.
        if (req.method === 'POST' && url.pathname.endsWith('/configmaps')) {
          try {
            new coreV1.ConfigMap(body as never).validate();
          } catch (e) {
            problems.push(String(e));
          }
          return json(201, body);
        }
        if (req.method === 'POST' && url.pathname.endsWith('/jobs')) {
          try {
            new batchV1.Job(body as never).validate();
          } catch (e) {
            problems.push(String(e));
          }
          return json(201, body);
        }
        if (req.method === 'GET' && url.pathname.endsWith('/status')) return json(200, { apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'j' }, status: { succeeded: 1 } });
        if (req.method === 'GET' && url.pathname === '/api/v1/namespaces/forge-eval/pods') {
          if (!/^job-name=forge-eval-[0-9a-f]{20}$/.test(url.searchParams.get('labelSelector') ?? '')) problems.push(`labelSelector ${url.searchParams.get('labelSelector')}`);
          return json(200, { apiVersion: 'v1', kind: 'PodList', metadata: {}, items: [{ metadata: { name: 'agent-pod-1' } }] });
        }
        if (req.method === 'GET' && url.pathname === '/api/v1/namespaces/forge-eval/pods/agent-pod-1/log') {
          if (url.searchParams.get('container') !== 'agent') problems.push('log container');
          return res.writeHead(200, { 'content-type': 'text/plain' }).end('hello from the pod\nFORGE_ANSWER {"eligible":true}\n');
        }
        if (req.method === 'DELETE') return json(200, { apiVersion: 'v1', kind: 'Status', status: 'Success' });
        json(404, { kind: 'Status', status: 'Failure', code: 404 });
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const dir = mkdtempSync(join(tmpdir(), 'forge-kubeconfig-'));
    const kubeconfig = join(dir, 'config');
    writeFileSync(
      kubeconfig,
      `apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: http://127.0.0.1:${port}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: stand-in\n  context:\n    cluster: stand-in\n    user: u\ncurrent-context: stand-in\nusers:\n- name: u\n  user:\n    token: test-token\n`,
    );
    try {
      const r = await new KubernetesJobExecutor(await kubeJobApi({ kubeconfig }), OPTS).run(job(zipAgent), new AbortController().signal);
      expect(r).toMatchObject({ outcome: 'ok', answer: { eligible: true }, logs: 'hello from the pod\n' });
      expect(problems).toEqual([]);
      expect(seen.map((s) => s.replace(/forge-eval-[0-9a-f]{20}/, 'NAME'))).toEqual([
        'POST /api/v1/namespaces/forge-eval/configmaps',
        'POST /apis/batch/v1/namespaces/forge-eval/jobs',
        'GET /apis/batch/v1/namespaces/forge-eval/jobs/NAME/status',
        'GET /api/v1/namespaces/forge-eval/pods',
        'GET /api/v1/namespaces/forge-eval/pods/agent-pod-1/log',
        'DELETE /apis/batch/v1/namespaces/forge-eval/jobs/NAME',
        'DELETE /api/v1/namespaces/forge-eval/configmaps/NAME',
      ]);
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import * as appsV1 from 'kubernetes-models/apps/v1';
import * as autoscalingV2 from 'kubernetes-models/autoscaling/v2';
import * as policyV1 from 'kubernetes-models/policy/v1';
import * as rbacV1 from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import * as coreV1 from 'kubernetes-models/v1';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { evaluate, loadAll, renderTemplate, templateCalls, TERRAFORM_DIR, type Module } from './helpers/terraform.ts';

// The Kubernetes resources are YAML templates the terraform applies (kubernetes_manifest +
// yamldecode(templatefile(...))). Each one is rendered here as terraform would render it with the root
// defaults, and validated against the Kubernetes OpenAPI schema (npm kubernetes-models: the models and
// ajv validators generated from Kubernetes' OpenAPI spec). KEDA's resources are CRDs outside that schema:
// they are checked by hand. Then the resources are checked against each other: selectors match pods,
// targets, config maps and the secret exist.
type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; spec?: Record<string, unknown> };
interface Rendered {
  file: string;
  obj: Obj;
}

const GROUPS: Record<string, Record<string, unknown>> = {
  v1: coreV1,
  'apps/v1': appsV1,
  'autoscaling/v2': autoscalingV2,
  'policy/v1': policyV1,
  'rbac.authorization.k8s.io/v1': rbacV1,
};

let all: Map<string, Module>;
let rendered: Rendered[];

beforeAll(async () => {
  all = await loadAll();
  rendered = templateCalls(all).map((c) => {
    const text = renderTemplate(readFileSync(c.file, 'utf8'), c.vars);
    return { file: relative(TERRAFORM_DIR, c.file), obj: parseYaml(text) as Obj };
  });
}, 60_000);

const of = (kind: string) => rendered.filter((r) => r.obj.kind === kind).map((r) => r.obj);
type PodSpec = { containers: Array<{ env?: Array<{ valueFrom?: { secretKeyRef?: { name: string }; configMapKeyRef?: { name: string } } }> }>; volumes?: Array<{ configMap?: { name: string }; secret?: { secretName: string } }>; serviceAccountName?: string };
const podTemplates = () =>
  rendered
    .filter((r) => ['Deployment', 'StatefulSet'].includes(r.obj.kind))
    .map((r) => ({ name: r.obj.metadata.name, file: r.file, tpl: (r.obj.spec as { template: { metadata: { labels: Record<string, string> }; spec: PodSpec } }).template }));

describe('Kubernetes manifests', () => {
  it('render with the root defaults into one object each, in the namespace', () => {
    expect(rendered.length).toBeGreaterThan(20);
    for (const r of rendered) {
      expect(r.obj.apiVersion, r.file).toMatch(/\S/);
      expect(r.obj.metadata.namespace, r.file).toBe('forge');
    }
    const kinds = new Set(rendered.map((r) => r.obj.kind));
    for (const k of ['Deployment', 'StatefulSet', 'Service', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'ScaledObject', 'Role', 'RoleBinding', 'ServiceAccount']) expect(kinds, k).toContain(k);
  });

  it('are valid against the Kubernetes OpenAPI schema', () => {
    const checked: string[] = [];
    for (const r of rendered) {
      if (r.obj.apiVersion.startsWith('keda.sh/')) continue;
      const Model = GROUPS[r.obj.apiVersion]?.[r.obj.kind] as (new (d: unknown) => { validate(): void }) | undefined;
      expect(Model, `${r.file}: ${r.obj.apiVersion} ${r.obj.kind} is a Kubernetes kind`).toBeDefined();
      expect(() => new Model!(r.obj).validate(), r.file).not.toThrow();
      checked.push(r.file);
    }
    expect(checked.length).toBe(rendered.filter((r) => !r.obj.apiVersion.startsWith('keda.sh/')).length);
    // The check can fail: a replica count that is not an integer is refused.
    const d = of('Deployment')[0]!;
    expect(() => new appsV1.Deployment({ ...d, spec: { ...d.spec, replicas: 'two' } } as never).validate()).toThrow(/replicas/);
  });

  it('run the API with two or more replicas behind a service, autoscaled, and runners scaled on queue depth', () => {
    const api = of('Deployment').find((d) => d.metadata.name === 'forge-api')!;
    expect(api.spec!.replicas).toBeGreaterThanOrEqual(2);
    const hpa = of('HorizontalPodAutoscaler').find((h) => h.metadata.name === 'forge-api')!;
    expect(hpa.spec).toMatchObject({ scaleTargetRef: { kind: 'Deployment', name: 'forge-api' }, minReplicas: 2 });
    const so = of('ScaledObject')[0]!;
    expect(so.spec).toMatchObject({ scaleTargetRef: { name: 'forge-runner' }, triggers: [{ type: 'redis', metadata: { listName: 'bull:forge-tasks:wait' }, authenticationRef: { name: 'forge-redis-auth' } }] });
    expect(of('TriggerAuthentication').map((t) => t.metadata.name)).toContain('forge-redis-auth');
    expect(of('Deployment').map((d) => d.metadata.name)).toContain('forge-runner');
    // The image runs non-root, on the ClickHouse cluster, never the embedded store.
    const c = (api.spec as { template: { spec: { securityContext: { runAsNonRoot: boolean }; containers: Array<{ env: Array<{ name: string; value?: string }> }> } } }).template.spec;
    expect(c.securityContext.runAsNonRoot).toBe(true);
    const env = Object.fromEntries(c.containers[0]!.env.map((e) => [e.name, e.value]));
    expect(env).toMatchObject({ FORGE_CLICKHOUSE_URL: 'http://forge-clickhouse.forge.svc.cluster.local:8123', FORGE_CLICKHOUSE_CLUSTER: 'forge', FORGE_HOST: '0.0.0.0' });
    expect(env.FORGE_REDIS_URL).toMatch(/^redis:\/\/:\$\(REDIS_PASSWORD\)@forge-redis\.forge\.svc\.cluster\.local:6379$/);
  });

  it('hold together: services select pods, targets exist, config maps and the one secret are those terraform creates', () => {
    const pods = podTemplates();
    for (const s of of('Service')) {
      const sel = (s.spec as { selector: Record<string, string> }).selector;
      expect(
        pods.some((p) => Object.entries(sel).every(([k, v]) => p.tpl.metadata.labels[k] === v)),
        `service ${s.metadata.name} selects pods`,
      ).toBe(true);
    }
    for (const p of of('PodDisruptionBudget')) {
      const sel = (p.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels;
      expect(pods.some((x) => Object.entries(sel).every(([k, v]) => x.tpl.metadata.labels[k] === v)), `pdb ${p.metadata.name}`).toBe(true);
    }
    const workloads = new Set(pods.map((p) => p.name));
    for (const h of of('HorizontalPodAutoscaler')) expect(workloads).toContain((h.spec as { scaleTargetRef: { name: string } }).scaleTargetRef.name);
    for (const s of of('ScaledObject')) expect(workloads).toContain((s.spec as { scaleTargetRef: { name: string } }).scaleTargetRef.name);

    // Config maps created by kubernetes_config_map_v1 resources (names as terraform evaluates them).
    const configMaps = new Set<string>();
    for (const m of all.values()) {
      for (const [k, b] of Object.entries(m.resources)) {
        if (!k.startsWith('kubernetes_config_map_v1.')) continue;
        const name = String(evaluate(all, m, (b.metadata as Array<{ name: string }>)[0]!.name));
        configMaps.add(name);
      }
    }
    const usedConfigMaps = new Set<string>();
    const usedSecrets = new Set<string>();
    for (const p of pods) {
      for (const v of p.tpl.spec.volumes ?? []) {
        if (v.configMap) usedConfigMaps.add(v.configMap.name);
        if (v.secret) usedSecrets.add(v.secret.secretName);
      }
      for (const c of p.tpl.spec.containers) for (const e of c.env ?? []) if (e.valueFrom?.secretKeyRef) usedSecrets.add(e.valueFrom.secretKeyRef.name);
      if (p.tpl.spec.serviceAccountName) expect(of('ServiceAccount').map((s) => s.metadata.name)).toContain(p.tpl.spec.serviceAccountName);
    }
    // Every secret comes from the one secret of var.secret_name.
    expect([...usedSecrets]).toEqual(['forge-secrets']);
    for (const cm of usedConfigMaps) {
      expect(configMaps, `config map ${cm} is created by terraform`).toContain(cm);
    }
  });
});

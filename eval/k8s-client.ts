import type { KubeJobApi } from './k8s.ts';

/**
 * The Kubernetes Job executor's API over @kubernetes/client-node (BatchV1Api, CoreV1Api), configured from a
 * kubeconfig file or the default chain (KUBECONFIG, ~/.kube/config, in-cluster service account). The
 * module is loaded only when the Kubernetes executor is chosen.
 */
export async function kubeJobApi(opts: { kubeconfig?: string } = {}): Promise<KubeJobApi> {
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
  else kc.loadFromDefault();
  const batch = kc.makeApiClient(k8s.BatchV1Api);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  return {
    async createConfigMap(namespace, body) {
      await core.createNamespacedConfigMap({ namespace, body: body as never });
    },
    async createJob(namespace, body) {
      await batch.createNamespacedJob({ namespace, body: body as never });
    },
    async jobStatus(namespace, name) {
      const s = (await batch.readNamespacedJobStatus({ name, namespace })).status;
      return {
        succeeded: s?.succeeded,
        failed: s?.failed,
        conditions: s?.conditions?.map((c) => ({ type: c.type, status: c.status, reason: c.reason, message: c.message })),
      };
    },
    async podLog(namespace, jobName) {
      const pods = await core.listNamespacedPod({ namespace, labelSelector: `job-name=${jobName}` });
      const pod = pods.items[0]?.metadata?.name;
      return pod ? await core.readNamespacedPodLog({ name: pod, namespace, container: 'agent' }) : '';
    },
    async deleteJob(namespace, name) {
      await batch.deleteNamespacedJob({ name, namespace, propagationPolicy: 'Background' });
    },
    async deleteConfigMap(namespace, name) {
      await core.deleteNamespacedConfigMap({ name, namespace });
    },
  };
}

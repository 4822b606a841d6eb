import { startPrometheusWithRules } from './alertmanager.ts';

/**
 * A real Prometheus (Debian's /usr/bin/prometheus) on a free loopback port, with a temp config and TSDB
 * directory, scraping the given targets every `scrapeIntervalS` seconds. `query` runs PromQL through the
 * HTTP API; `waitFor` polls it until a predicate holds (bounded; not a timing assertion).
 */
export interface PrometheusServer {
  readonly url: string;
  query(promql: string): Promise<PromSample[]>;
  /** Polls `promql` until `ok(samples)` holds; throws with the last result after timeoutMs. */
  waitFor(promql: string, ok: (s: PromSample[]) => boolean, timeoutMs?: number): Promise<PromSample[]>;
  /** What Prometheus printed so far (for failure messages). */
  output(): string;
  stop(): Promise<void>;
}

export interface PromSample {
  metric: Record<string, string>;
  /** The sample value as a number. */
  value: number;
}

export async function startPrometheus(opts: { targets: string[]; scrapeIntervalS?: number; metricsPath?: string }): Promise<PrometheusServer> {
  const interval = `${opts.scrapeIntervalS ?? 1}s`;
  const svc = await startPrometheusWithRules(
    [
      'global:',
      `  scrape_interval: ${interval}`,
      `  evaluation_interval: ${interval}`,
      'scrape_configs:',
      '  - job_name: forge',
      `    metrics_path: ${opts.metricsPath ?? '/metrics'}`,
      '    static_configs:',
      `      - targets: [${opts.targets.map((t) => JSON.stringify(t)).join(', ')}]`,
      '',
    ].join('\n'),
  );
  const url = svc.url;
  const query = async (promql: string): Promise<PromSample[]> => {
    const r = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await r.json()) as { status: string; error?: string; data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
    if (body.status !== 'success') throw new Error(`PromQL ${promql}: ${body.error ?? r.status}`);
    if (body.data?.resultType === 'scalar') return [{ metric: {}, value: Number((body.data.result as unknown as [number, string])[1]) }];
    return (body.data?.result ?? []).map((s) => ({ metric: s.metric, value: Number(s.value[1]) }));
  };
  return {
    url,
    query,
    output: () => svc.output(),
    async waitFor(promql, ok, timeoutMs = 30_000) {
      const until = Date.now() + timeoutMs;
      let last: PromSample[] = [];
      for (;;) {
        last = await query(promql);
        if (ok(last)) return last;
        if (Date.now() > until) throw new Error(`PromQL ${promql} never satisfied; last result ${JSON.stringify(last)}; prometheus: ${svc.output()}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    },
    stop: () => svc.stop(),
  };
}

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './redis.ts';

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
  /** Prometheus' own stderr so far (for failure messages). */
  output(): string;
  stop(): Promise<void>;
}

export interface PromSample {
  metric: Record<string, string>;
  /** The sample value as a number. */
  value: number;
}

const PROMETHEUS_BIN = process.env.FORGE_TEST_PROMETHEUS_BIN ?? '/usr/bin/prometheus';

export async function startPrometheus(opts: { targets: string[]; scrapeIntervalS?: number; metricsPath?: string }): Promise<PrometheusServer> {
  const dir = mkdtempSync(join(tmpdir(), 'forge-prometheus-'));
  const interval = `${opts.scrapeIntervalS ?? 1}s`;
  writeFileSync(
    join(dir, 'prometheus.yml'),
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
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(
    PROMETHEUS_BIN,
    [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`prometheus exited with ${child.exitCode}: ${err}`);
    }
    try {
      if ((await fetch(`${url}/-/ready`)).ok) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus on ${port} did not become ready: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
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
    output: () => err,
    async waitFor(promql, ok, timeoutMs = 30_000) {
      const until = Date.now() + timeoutMs;
      let last: PromSample[] = [];
      for (;;) {
        last = await query(promql);
        if (ok(last)) return last;
        if (Date.now() > until) throw new Error(`PromQL ${promql} never satisfied; last result ${JSON.stringify(last)}; prometheus: ${err}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    },
    stop,
  };
}

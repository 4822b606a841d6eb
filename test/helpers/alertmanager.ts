import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './redis.ts';

/**
 * Real Prometheus and Alertmanager (Debian's /usr/bin/prometheus and /usr/bin/prometheus-alertmanager) on
 * free loopback ports, each in its own temp dir; stop() kills the process and removes the dir.
 */
export interface LocalService {
  readonly url: string;
  readonly dir: string;
  /** What the process printed so far (for failure messages). */
  output(): string;
  stop(): Promise<void>;
}

const PROMETHEUS_BIN = process.env.FORGE_TEST_PROMETHEUS_BIN ?? '/usr/bin/prometheus';
const ALERTMANAGER_BIN = process.env.FORGE_TEST_ALERTMANAGER_BIN ?? '/usr/bin/prometheus-alertmanager';

async function launch(name: string, bin: string, args: (port: number, dir: string) => string[], dir: string): Promise<LocalService> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(bin, args(port, dir), { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
  let out = '';
  child.stdout?.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-20_000)));
  child.stderr?.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-20_000)));
  let exited = false;
  child.on('exit', () => (exited = true));
  const stop = async (): Promise<void> => {
    if (!exited) {
      const gone = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) {
      await stop();
      throw new Error(`${name} exited before it was ready:\n${out}`);
    }
    try {
      const res = await fetch(`${url}/-/ready`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${name} not ready in 30 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, dir, output: () => out, stop };
}

/** Config text, or a function of the service's temp dir (to point at files written there). */
export type ConfigText = string | ((dir: string) => string);

/** Starts Alertmanager with the given config (no clustering); `files` are written to its dir (mode 600). */
export async function startAlertmanager(config: ConfigText, files: Record<string, string> = {}): Promise<LocalService> {
  const dir = mkdtempSync(join(tmpdir(), 'forge-am-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content, { mode: 0o600 });
  writeFileSync(join(dir, 'alertmanager.yml'), typeof config === 'string' ? config : config(dir));
  return launch(
    'alertmanager',
    ALERTMANAGER_BIN,
    (port, d) => [
      `--config.file=${join(d, 'alertmanager.yml')}`,
      `--storage.path=${join(d, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--cluster.listen-address=',
      '--log.level=warn',
    ],
    dir,
  );
}

/**
 * Starts Prometheus with a full config text (rule_files, alerting; test/helpers/prometheus.ts builds a
 * scrape-only one on top); `files` are written next to it (rule files etc.) and may be referenced by bare
 * name from the config.
 */
export async function startPrometheusWithRules(config: ConfigText, files: Record<string, string> = {}, args: string[] = []): Promise<LocalService> {
  const dir = mkdtempSync(join(tmpdir(), 'forge-prom-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  writeFileSync(join(dir, 'prometheus.yml'), typeof config === 'string' ? config : config(dir));
  return launch(
    'prometheus',
    PROMETHEUS_BIN,
    (port, d) => [
      `--config.file=${join(d, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(d, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
      ...args,
    ],
    dir,
  );
}

/** Polls `probe` until it returns a value (not undefined) or the time runs out. */
export async function eventually<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 30_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

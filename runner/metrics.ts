import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { PlatformMetrics } from '../collector/index.ts';
import type { ErrorHandler } from './errors.ts';

export interface RunnerMetricsOptions {
  platform: PlatformMetrics;
  queue: string;
  concurrency: number;
  /** Tasks waiting in the queue (BullMQ waiting + delayed + prioritized). */
  queueDepth: () => Promise<number>;
  inFlight: () => number;
  intakeOpen: () => boolean;
  /** Liveness beat interval, ms: the dead-runner rule fires when beats stop. */
  beatMs: number;
  /** Serve /metrics on this port (loopback or FORGE_RUNNER_METRICS_HOST); undefined: no server. */
  port?: number;
  host?: string;
  onError: ErrorHandler;
}

export interface RunnerMetrics {
  /** http://host:port when serving. */
  url?: string;
  /** One beat now (also run every beatMs). */
  beat(): Promise<void>;
  close(): Promise<void>;
}

/** A runner's metrics: a liveness beat with queue depth, in flight, concurrency; /metrics for Prometheus. */
export async function startRunnerMetrics(o: RunnerMetricsOptions): Promise<RunnerMetrics> {
  o.platform.declareQueue(o.queue);
  const beat = async (): Promise<void> => {
    let depth = 0;
    try {
      depth = await o.queueDepth();
    } catch (e) {
      o.onError(e, 'runner metrics: queue depth');
    }
    o.platform.runnerBeat(o.queue, { queueDepth: depth, inFlight: o.inFlight(), concurrency: o.concurrency, intakeOpen: o.intakeOpen(), nowMs: Date.now() });
  };
  await beat();
  let beating = false;
  const timer = setInterval(() => {
    if (beating) return;
    beating = true;
    void beat().finally(() => {
      beating = false;
    });
  }, o.beatMs);
  timer.unref();
  let server: Server | undefined;
  let url: string | undefined;
  if (o.port !== undefined) {
    server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
        return;
      }
      o.platform.render().then(
        (text) => res.writeHead(200, { 'content-type': o.platform.contentType }).end(text),
        (e: unknown) => {
          o.onError(e, 'runner metrics: render');
          res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable');
        },
      );
    });
    const srv = server;
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(o.port, o.host ?? '127.0.0.1', () => resolve());
    });
    const a = srv.address() as AddressInfo;
    url = `http://${a.address}:${a.port}`;
  }
  return {
    ...(url ? { url } : {}),
    beat,
    close: async () => {
      clearInterval(timer);
      if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A real redis-server (Debian's /usr/bin/redis-server) on a free loopback port, in its own temp dir,
 * without persistence. `kill()` + `restart()` simulate an outage on the same port (data is lost, as in
 * a crash of a cache-only Redis).
 */
export interface RedisServer {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  /** SIGKILL, as a crash would. Resolves once the process is gone. */
  kill(): Promise<void>;
  /** Starts a new server on the same port (after kill or stop). */
  restart(): Promise<void>;
  /** Graceful stop and temp dir removal. */
  stop(): Promise<void>;
}

const REDIS_BIN = process.env.FORGE_TEST_REDIS_BIN ?? '/usr/bin/redis-server';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function launch(port: number, dir: string): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      REDIS_BIN,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--protected-mode', 'no', '--loglevel', 'warning'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let settled = false;
    const done = (err?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        child.kill('SIGKILL');
        reject(err);
      } else resolve(child);
    };
    const timer = setTimeout(() => done(new Error(`redis-server on ${port} did not start: ${out}`)), 10_000);
    child.on('error', (e) => done(e));
    child.on('exit', (code) => done(new Error(`redis-server on ${port} exited with ${code}: ${out}`)));
    // With loglevel warning nothing is printed on success: poll the port instead.
    const poll = (): void => {
      if (settled) return;
      const sock = connect(port, '127.0.0.1');
      sock.once('connect', () => {
        sock.write('PING\r\n');
      });
      sock.once('data', (d) => {
        sock.destroy();
        if (d.toString().startsWith('+PONG')) done();
        else setTimeout(poll, 20);
      });
      sock.once('error', () => {
        sock.destroy();
        setTimeout(poll, 20);
      });
    };
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    poll();
  });
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

export async function startRedis(): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'forge-redis-'));
  let child: ChildProcess | undefined;
  let port = 0;
  let lastErr: unknown;
  // A free port can be taken between probing and binding: retry a few times.
  for (let attempt = 0; attempt < 5 && !child; attempt++) {
    port = await freePort();
    try {
      child = await launch(port, dir);
    } catch (e) {
      lastErr = e;
    }
  }
  if (!child) throw lastErr instanceof Error ? lastErr : new Error('redis-server did not start');
  let current: ChildProcess | undefined = child;
  const host = '127.0.0.1';
  return {
    host,
    port,
    url: `redis://${host}:${port}`,
    async kill() {
      if (!current) return;
      const c = current;
      current = undefined;
      c.kill('SIGKILL');
      await waitExit(c);
    },
    async restart() {
      if (current) {
        const c = current;
        current = undefined;
        c.kill('SIGKILL');
        await waitExit(c);
      }
      current = await launch(port, dir);
    },
    async stop() {
      if (current) {
        const c = current;
        current = undefined;
        c.kill('SIGTERM');
        const t = setTimeout(() => c.kill('SIGKILL'), 3000);
        await waitExit(c);
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A loopback TCP proxy in front of a port, to cut one client's link (a network partition) without
 * touching the server. `cut()` destroys every open connection and refuses new ones until `restore()`.
 */
export interface TcpProxy {
  readonly port: number;
  readonly url: string;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const open = new Set<Socket>();
  let isCut = false;
  const server: Server = createServer((client) => {
    if (isCut) {
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, targetHost);
    open.add(client);
    open.add(upstream);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    cut() {
      isCut = true;
      for (const s of open) s.destroy();
      open.clear();
    },
    restore() {
      isCut = false;
    },
    close() {
      isCut = true;
      for (const s of open) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Polls until check() is truthy (or resolves truthy); rejects after timeoutMs with the label. */
export async function waitFor(label: string, check: () => unknown, timeoutMs = 10_000, everyMs = 10): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for: ${label}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A fresh key prefix per test, so tests sharing one server never see each other's keys. */
export function freshPrefix(tag = 't'): string {
  return `forge-test:${tag}:${process.pid}:${Date.now().toString(36)}:${Math.random().toString(36).slice(2, 8)}:`;
}

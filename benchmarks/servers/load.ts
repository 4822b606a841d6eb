// The API benchmark's load generator, in a process of its own (pinned by the benchmark to another core than
// the server), so that what it measures is the server and not the generator sharing the server's core.
// Prints one JSON line: requests per second, latency percentiles (ms), non-2xx answers, and the server's
// CPU time over the measured window (from /proc, when the server's pid is given).
//
//   peak:  autocannon, as fast as the server answers, from `connections` connections (closed loop);
//   cycle: as fast as the server answers, from `connections` keep-alive connections (closed loop), each
//          sending the request and then a second one built from its answer (`then`: a runner's admission,
//          then the settle of the reservation it got), and so on (a client of its own: autocannon's
//          per-answer hooks cost more than the server's work, so it, not the server, set the rate);
//   paced: requests sent at a fixed rate, evenly spaced (open loop: request i is due at i / rate), over at
//          most `connections` keep-alive connections; a request's latency runs from when it was due, so
//          time spent waiting for a free connection counts (no coordinated omission).
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import autocannon from 'autocannon';

export interface LoadSpec {
  mode: 'peak' | 'paced' | 'cycle';
  url: string;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string;
  seconds: number;
  connections: number;
  /** Requests per second in all (paced). */
  rate?: number;
  /** The server's pid: its CPU time over the measured window is reported. */
  serverPid?: number;
  /**
   * Cycle only: after each request, a second one on the same connection, to `path` with `{id}` replaced by
   * the first answer's `reservation_id` (when it has one) and `body` with `{n}` replaced by a number unique
   * to this load generator (an event id). Both requests count in the rate.
   */
  then?: { path: string; body: string };
}

export interface LoadResult {
  rps: number;
  total: number;
  p50: number;
  p99: number;
  non2xx: number;
  /** Server CPU time over the window, ms (user + system); undefined without a pid or /proc. */
  serverCpuMs?: number;
  /** Length of the measured window, ms. */
  windowMs: number;
}

/** User + system CPU time of a process, ms (clock ticks of 10 ms). */
function cpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return undefined;
  }
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

async function peak(s: LoadSpec): Promise<LoadResult> {
  const times: number[] = [];
  const c0 = cpuMs(s.serverPid);
  const t0 = performance.now();
  const r = await new Promise<autocannon.Result>((resolve, reject) => {
    const inst = autocannon({ url: s.url, connections: s.connections, duration: s.seconds, method: s.method, headers: s.headers, ...(s.body ? { body: s.body } : {}) }, (err, result) => (err ? reject(err as Error) : resolve(result)));
    // Each response's own time in fractional ms (autocannon's histogram keeps whole milliseconds only).
    inst.on('response', (_client, status, _bytes, ms) => {
      if (status < 300) times.push(ms);
    });
  });
  const windowMs = performance.now() - t0;
  const c1 = cpuMs(s.serverPid);
  times.sort((a, b) => a - b);
  return { rps: r.requests.average, total: r.requests.total, p50: percentile(times, 50), p99: percentile(times, 99), non2xx: r.non2xx, windowMs, ...(c0 !== undefined && c1 !== undefined ? { serverCpuMs: c1 - c0 } : {}) };
}

interface Conn {
  socket: Socket;
  /** When the request in flight was due (performance.now() ms); undefined when idle. */
  due: number | undefined;
  buf: Buffer;
}

const HEAD_END = Buffer.from('\r\n\r\n');

/** Evenly spaced requests at `rate` per second for `seconds`, over at most `connections` connections. */
async function paced(s: LoadSpec): Promise<LoadResult> {
  const u = new URL(s.url);
  const body = s.body ?? '';
  const head = [`${s.method} ${u.pathname}${u.search} HTTP/1.1`, `host: ${u.host}`, ...Object.entries(s.headers).map(([k, v]) => `${k}: ${v}`), ...(s.method === 'POST' ? [`content-length: ${Buffer.byteLength(body)}`] : []), '', ''].join('\r\n');
  const request = Buffer.from(head + (s.method === 'POST' ? body : ''));
  const rate = s.rate ?? 1000;
  const total = Math.max(1, Math.round(rate * s.seconds));
  const interval = 1000 / rate;
  const times: number[] = [];
  let non2xx = 0;
  let done = 0;
  const waiting: number[] = [];
  let waitingHead = 0;
  const idle: Conn[] = [];

  const send = (c: Conn, due: number): void => {
    c.due = due;
    c.socket.write(request);
  };
  const finish = (c: Conn, status: number): void => {
    const due = c.due!;
    c.due = undefined;
    if (status >= 200 && status < 300) times.push(performance.now() - due);
    else non2xx++;
    done++;
    if (waitingHead < waiting.length) send(c, waiting[waitingHead++]!);
    else idle.push(c);
  };
  /** Reads whole responses off the connection's buffer (fastify answers with a content-length). */
  const parse = (c: Conn): void => {
    for (;;) {
      const end = c.buf.indexOf(HEAD_END);
      if (end < 0) return;
      const headText = c.buf.subarray(0, end).toString('latin1');
      const status = Number(headText.slice(9, 12));
      const m = /\r\ncontent-length: *(\d+)/i.exec(headText);
      const len = m ? Number(m[1]) : 0;
      if (c.buf.length < end + 4 + len) return;
      c.buf = c.buf.subarray(end + 4 + len);
      finish(c, status);
    }
  };

  const conns = await Promise.all(
    Array.from({ length: Math.max(1, s.connections) }, () => new Promise<Conn>((resolve, reject) => {
      const socket = connect({ host: u.hostname, port: Number(u.port), noDelay: true });
      const c: Conn = { socket, due: undefined, buf: Buffer.alloc(0) };
      socket.once('connect', () => resolve(c));
      socket.once('error', reject);
      socket.on('data', (d: Buffer) => {
        c.buf = c.buf.length === 0 ? d : Buffer.concat([c.buf, d]);
        parse(c);
      });
    })),
  );
  idle.push(...conns);

  const c0 = cpuMs(s.serverPid);
  const t0 = performance.now();
  let next = 0;
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      const now = performance.now();
      while (next < total && t0 + next * interval <= now) {
        const due = t0 + next * interval;
        next++;
        const c = idle.pop();
        if (c) send(c, due);
        else waiting.push(due);
      }
      if (next >= total) return resolve();
      const wait = t0 + next * interval - performance.now();
      // Timers are coarse (about a millisecond): the last stretch before a request is due spins on
      // setImmediate, so requests leave evenly spaced rather than in bursts.
      if (wait > 2) setTimeout(pump, wait - 1.5);
      else setImmediate(pump);
    };
    pump();
  });
  const deadline = performance.now() + 10_000;
  while (done < total && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  const windowMs = performance.now() - t0;
  const c1 = cpuMs(s.serverPid);
  for (const c of conns) c.socket.destroy();
  times.sort((a, b) => a - b);
  // Requests never answered within 10 s count as failures.
  non2xx += total - done;
  return { rps: (done * 1000) / windowMs, total: done, p50: percentile(times, 50), p99: percentile(times, 99), non2xx, windowMs, ...(c0 !== undefined && c1 !== undefined ? { serverCpuMs: c1 - c0 } : {}) };
}

/** Reads whole responses off a connection's buffer (fastify answers with a content-length): status and body. */
function takeResponses(c: { buf: Buffer }, onResponse: (status: number, body: Buffer) => void): void {
  for (;;) {
    const end = c.buf.indexOf(HEAD_END);
    if (end < 0) return;
    const headText = c.buf.subarray(0, end).toString('latin1');
    const m = /\r\ncontent-length: *(\d+)/i.exec(headText);
    const len = m ? Number(m[1]) : 0;
    if (c.buf.length < end + 4 + len) return;
    const body = c.buf.subarray(end + 4, end + 4 + len);
    c.buf = c.buf.subarray(end + 4 + len);
    onResponse(Number(headText.slice(9, 12)), body);
  }
}

interface CycleConn {
  socket: Socket;
  buf: Buffer;
  /** The request in flight is the second of its cycle. */
  second: boolean;
  /** When the request in flight was sent (performance.now() ms). */
  sent: number;
}

/** A runner's cycle, closed loop: the request, then `then` built from its answer, on each connection, for `seconds`. */
async function cycle(s: LoadSpec): Promise<LoadResult> {
  const then = s.then!;
  const u = new URL(s.url);
  const headerLines = [`host: ${u.host}`, ...Object.entries(s.headers).map(([k, v]) => `${k}: ${v}`)];
  const requestOf = (method: string, path: string, body: string): Buffer => Buffer.from([`${method} ${path} HTTP/1.1`, ...headerLines, `content-length: ${Buffer.byteLength(body)}`, '', body].join('\r\n'));
  const first = requestOf(s.method, `${u.pathname}${u.search}`, s.body ?? '');
  const tag = `${process.pid}-${Date.now()}`;
  let n = 0;
  const times: number[] = [];
  let non2xx = 0;
  let done = 0;
  let running = true;
  const conns = await Promise.all(
    Array.from({ length: Math.max(1, s.connections) }, () => new Promise<CycleConn>((resolve, reject) => {
      const socket = connect({ host: u.hostname, port: Number(u.port), noDelay: true });
      const c: CycleConn = { socket, buf: Buffer.alloc(0), second: false, sent: 0 };
      socket.once('connect', () => resolve(c));
      socket.once('error', reject);
      socket.on('data', (d: Buffer) => {
        c.buf = c.buf.length === 0 ? d : Buffer.concat([c.buf, d]);
        takeResponses(c, (status, body) => {
          if (!running) return;
          times.push(performance.now() - c.sent);
          if (status >= 200 && status < 300) done++;
          else non2xx++;
          c.sent = performance.now();
          if (c.second) {
            c.second = false;
            socket.write(first);
          } else {
            const id = (JSON.parse(body.toString('utf8')) as { reservation_id?: string }).reservation_id ?? '';
            c.second = true;
            socket.write(requestOf('POST', then.path.replace('{id}', encodeURIComponent(id)), then.body.replace('{n}', `${tag}-${n++}`)));
          }
        });
      });
    })),
  );
  const c0 = cpuMs(s.serverPid);
  const t0 = performance.now();
  for (const c of conns) {
    c.sent = performance.now();
    c.socket.write(first);
  }
  await new Promise((r) => setTimeout(r, s.seconds * 1000));
  running = false;
  const windowMs = performance.now() - t0;
  const c1 = cpuMs(s.serverPid);
  for (const c of conns) c.socket.destroy();
  times.sort((a, b) => a - b);
  return { rps: (done * 1000) / windowMs, total: done, p50: percentile(times, 50), p99: percentile(times, 99), non2xx, windowMs, ...(c0 !== undefined && c1 !== undefined ? { serverCpuMs: c1 - c0 } : {}) };
}

const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec;
const out = await (spec.mode === 'paced' ? paced(spec) : spec.mode === 'cycle' ? cycle(spec) : peak(spec));
process.stdout.write(JSON.stringify(out) + '\n');
process.exit(0);

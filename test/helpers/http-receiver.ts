import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request the receiver got, with what it answered. */
export interface ReceivedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** Parsed JSON body, or undefined when the body is not JSON. */
  json: unknown;
  /** Status the receiver answered. */
  status: number;
  /** Problems the payload check found (empty when the payload is valid). */
  problems: string[];
}

export interface HttpReceiverOptions {
  /** Validates each request; returns problems (strings). */
  check?: (req: { path: string; json: unknown; headers: IncomingHttpHeaders }) => string[];
  /** Success answer: status and body (a function gets the parsed JSON). Default 200 "ok". */
  ok?: { status: number; body: (json: unknown) => string; contentType?: string };
}

/**
 * A loopback HTTP receiver standing in for Slack / PagerDuty: records every request, checks each payload,
 * and can be told to fail the next N requests (500 by default).
 */
export class HttpReceiver {
  readonly requests: ReceivedRequest[] = [];
  #failures: Array<{ status: number; body: string }> = [];
  #waiters: Array<{ n: number; resolve: () => void }> = [];

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(opts: HttpReceiverOptions = {}): Promise<HttpReceiver> {
    const box: { self?: HttpReceiver } = {};
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(body);
        } catch {
          json = undefined;
        }
        const r = box.self as HttpReceiver;
        const fail = r.#failures.shift();
        const status = fail?.status ?? opts.ok?.status ?? 200;
        const problems = json === undefined ? ['body is not JSON'] : (opts.check?.({ path: req.url ?? '', json, headers: req.headers }) ?? []);
        if (req.headers['content-type'] !== 'application/json') problems.push(`content-type is ${req.headers['content-type']}`);
        r.requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, json, status, problems });
        if (fail !== undefined) {
          res.writeHead(fail.status, { 'content-type': 'text/plain' }).end(fail.body);
        } else {
          res
            .writeHead(status, { 'content-type': opts.ok?.contentType ?? 'text/plain' })
            .end(opts.ok ? opts.ok.body(json) : 'ok');
        }
        r.#notify();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    box.self = new HttpReceiver(server, `http://127.0.0.1:${port}`);
    return box.self;
  }

  /** The next `n` requests are answered with `status` (500 unless told) and `body`. */
  failNext(n: number, status = 500, body = 'internal_error'): void {
    for (let i = 0; i < n; i++) this.#failures.push({ status, body });
  }

  /** Requests answered 2xx. */
  accepted(): ReceivedRequest[] {
    return this.requests.filter((r) => r.status >= 200 && r.status < 300);
  }

  /** Every problem found in any request, prefixed with the request index. */
  problems(): string[] {
    return this.requests.flatMap((r, i) => r.problems.map((p) => `#${i} ${r.path}: ${p}`));
  }

  /** Resolves once at least n requests arrived (rejects after timeoutMs). */
  waitForCount(n: number, timeoutMs = 10_000): Promise<void> {
    if (this.requests.length >= n) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`receiver got ${this.requests.length} of ${n} requests in ${timeoutMs} ms`)), timeoutMs);
      this.#waiters.push({
        n,
        resolve: () => {
          clearTimeout(t);
          resolve();
        },
      });
    });
  }

  #notify(): void {
    this.#waiters = this.#waiters.filter((w) => {
      if (this.requests.length >= w.n) {
        w.resolve();
        return false;
      }
      return true;
    });
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

// ------------------------------------------------------------------ payload checks

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkText(obj: unknown, where: string, max: number, types: string[]): string[] {
  if (!isObj(obj)) return [`${where} is not an object`];
  const p: string[] = [];
  if (typeof obj.type !== 'string' || !types.includes(obj.type)) p.push(`${where}.type is ${String(obj.type)}`);
  if (typeof obj.text !== 'string' || obj.text.length === 0) p.push(`${where}.text missing`);
  else if (obj.text.length > max) p.push(`${where}.text longer than ${max}`);
  return p;
}

function checkUrl(v: unknown, where: string): string[] {
  if (typeof v !== 'string') return [`${where} missing`];
  try {
    const u = new URL(v);
    return u.protocol === 'http:' || u.protocol === 'https:' ? [] : [`${where} is not http(s)`];
  } catch {
    return [`${where} is not a URL`];
  }
}

/** Slack incoming webhook message: `text` fallback plus Block Kit blocks within Slack's limits. */
export function checkSlackMessage(json: unknown): string[] {
  if (!isObj(json)) return ['message is not an object'];
  const p: string[] = [];
  for (const k of Object.keys(json)) if (!['text', 'blocks', 'username', 'icon_emoji', 'channel'].includes(k)) p.push(`unknown key ${k}`);
  if (typeof json.text !== 'string' || json.text.trim() === '') p.push('text missing (needed for notifications)');
  if (!Array.isArray(json.blocks) || json.blocks.length === 0) return [...p, 'blocks missing'];
  if (json.blocks.length > 50) p.push('more than 50 blocks');
  json.blocks.forEach((b: unknown, i) => {
    const w = `blocks[${i}]`;
    if (!isObj(b)) return p.push(`${w} not an object`);
    switch (b.type) {
      case 'header':
        p.push(...checkText(b.text, `${w}.text`, 150, ['plain_text']));
        break;
      case 'section':
        if (b.text === undefined && b.fields === undefined) p.push(`${w} has neither text nor fields`);
        if (b.text !== undefined) p.push(...checkText(b.text, `${w}.text`, 3000, ['mrkdwn', 'plain_text']));
        if (b.fields !== undefined) {
          if (!Array.isArray(b.fields) || b.fields.length > 10) p.push(`${w}.fields must be an array of at most 10`);
          else b.fields.forEach((f: unknown, j) => p.push(...checkText(f, `${w}.fields[${j}]`, 2000, ['mrkdwn', 'plain_text'])));
        }
        break;
      case 'actions':
        if (!Array.isArray(b.elements) || b.elements.length === 0 || b.elements.length > 25) p.push(`${w}.elements must hold 1..25`);
        else
          b.elements.forEach((e: unknown, j) => {
            const ew = `${w}.elements[${j}]`;
            if (!isObj(e) || e.type !== 'button') return p.push(`${ew} is not a button`);
            p.push(...checkText(e.text, `${ew}.text`, 75, ['plain_text']));
            p.push(...checkUrl(e.url, `${ew}.url`));
            if (e.style !== undefined && e.style !== 'primary' && e.style !== 'danger') p.push(`${ew}.style invalid`);
            return undefined;
          });
        break;
      case 'context':
        if (!Array.isArray(b.elements) || b.elements.length === 0 || b.elements.length > 10) p.push(`${w}.elements must hold 1..10`);
        else b.elements.forEach((e: unknown, j) => p.push(...checkText(e, `${w}.elements[${j}]`, 3000, ['mrkdwn', 'plain_text'])));
        break;
      case 'divider':
        break;
      default:
        p.push(`${w}.type ${String(b.type)} unknown`);
    }
    return undefined;
  });
  return p;
}

/** PagerDuty Events API v2 event (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/). */
export function checkPagerDutyEvent(json: unknown, expectedRoutingKey?: string): string[] {
  if (!isObj(json)) return ['event is not an object'];
  const p: string[] = [];
  const allowed = ['routing_key', 'event_action', 'dedup_key', 'payload', 'links', 'images', 'client', 'client_url'];
  for (const k of Object.keys(json)) if (!allowed.includes(k)) p.push(`unknown key ${k}`);
  if (typeof json.routing_key !== 'string' || json.routing_key.length !== 32) p.push('routing_key must be a 32-character string');
  if (expectedRoutingKey !== undefined && json.routing_key !== expectedRoutingKey) p.push('routing_key is not the configured one');
  if (!['trigger', 'acknowledge', 'resolve'].includes(String(json.event_action))) p.push(`event_action ${String(json.event_action)}`);
  if (typeof json.dedup_key !== 'string' || json.dedup_key.length === 0 || json.dedup_key.length > 255) p.push('dedup_key must be 1..255 characters');
  if (json.event_action === 'trigger') {
    const pl = json.payload;
    if (!isObj(pl)) return [...p, 'payload missing on trigger'];
    if (typeof pl.summary !== 'string' || pl.summary.length === 0 || pl.summary.length > 1024) p.push('payload.summary must be 1..1024 characters');
    if (typeof pl.source !== 'string' || pl.source.length === 0) p.push('payload.source missing');
    if (!['critical', 'error', 'warning', 'info'].includes(String(pl.severity))) p.push(`payload.severity ${String(pl.severity)}`);
    if (pl.timestamp !== undefined && (typeof pl.timestamp !== 'string' || Number.isNaN(Date.parse(pl.timestamp)))) p.push('payload.timestamp not ISO 8601');
    for (const k of ['component', 'group', 'class'] as const) if (pl[k] !== undefined && typeof pl[k] !== 'string') p.push(`payload.${k} not a string`);
    if (pl.custom_details !== undefined && !isObj(pl.custom_details)) p.push('payload.custom_details not an object');
    if (json.links !== undefined) {
      if (!Array.isArray(json.links)) p.push('links not an array');
      else json.links.forEach((l: unknown, i) => (isObj(l) ? p.push(...checkUrl(l.href, `links[${i}].href`)) : p.push(`links[${i}] not an object`)));
    }
  } else if (json.payload !== undefined) {
    p.push(`payload sent with ${String(json.event_action)}`);
  }
  return p;
}

/** PagerDuty's success answer: 202 with the dedup key. */
export const pagerDutyOk = {
  status: 202,
  contentType: 'application/json',
  body: (json: unknown) =>
    JSON.stringify({ status: 'success', message: 'Event processed', dedup_key: isObj(json) ? json.dedup_key : undefined }),
};

import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request the receiver got, parsed, with the problems its checks found and what it answered. */
export interface StripeRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** Form-encoded body decoded to flat keys as Stripe sends them, e.g. `items[0][price]`. */
  form: Record<string, string>;
  idempotencyKey: string | undefined;
  status: number;
  replayed: boolean;
  problems: string[];
}

const REQUIRED: Record<string, string[]> = {
  'POST /v1/customers': ['email', 'metadata[tenant_id]'],
  'POST /v1/subscriptions': ['customer', 'items[0][price]', 'items[0][quantity]', 'metadata[tenant_id]', 'metadata[plan_id]'],
  'POST /v1/billing/meter_events': ['event_name', 'payload[stripe_customer_id]', 'payload[value]', 'identifier', 'timestamp'],
  'GET /v1/subscriptions/:id': [],
  'POST /v1/subscriptions/:id': ['items[0][id]', 'items[0][price]', 'items[0][quantity]'],
  'POST /v1/invoiceitems': ['customer', 'currency', 'quantity', 'unit_amount_decimal', 'description', 'metadata[tenant_id]'],
  'POST /v1/transfers': ['amount', 'currency', 'destination', 'transfer_group'],
};

/**
 * A loopback HTTP server standing in for Stripe's API. It checks what it receives (known path, bearer secret
 * key, form encoding, required params, an Idempotency-Key on every POST), replays the first answer for a
 * repeated Idempotency-Key as Stripe does (400 when the params differ), and can fail the next N requests.
 */
export class StripeReceiver {
  readonly requests: StripeRequest[] = [];
  private failures: number[] = [];
  private readonly answers = new Map<string, { form: string; status: number; body: string }>();
  /** Subscriptions created, by id, as last answered (a GET or an update reads and changes them). */
  readonly subscriptions = new Map<string, Record<string, unknown>>();
  private seq = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    readonly secretKey: string,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(secretKey: string): Promise<StripeReceiver> {
    const box: { self?: StripeReceiver } = {};
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => (box.self as StripeReceiver).handle(req.method ?? '', req.url ?? '', req.headers, Buffer.concat(chunks).toString('utf8'), res));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    box.self = new StripeReceiver(server, (server.address() as AddressInfo).port, secretKey);
    return box.self;
  }

  /** The next n requests answer `status` (default 500) with a Stripe-shaped error. */
  failNext(n: number, status = 500): void {
    for (let i = 0; i < n; i++) this.failures.push(status);
  }

  /** Every problem found in every request (empty when all were well-formed). */
  problems(): string[] {
    return this.requests.flatMap((r) => r.problems.map((p) => `${r.method} ${r.path}: ${p}`));
  }

  byPath(path: string): StripeRequest[] {
    return this.requests.filter((r) => r.path === path);
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }

  private handle(method: string, path: string, headers: IncomingHttpHeaders, body: string, res: import('node:http').ServerResponse): void {
    const problems: string[] = [];
    const bare = path.split('?')[0] ?? '';
    const subId = /^\/v1\/subscriptions\/(sub_[A-Za-z0-9]+)$/.exec(bare)?.[1];
    const route = `${method} ${subId ? '/v1/subscriptions/:id' : bare}`;
    if (subId && !this.subscriptions.has(subId)) problems.push(`no subscription ${subId}`);
    const required = REQUIRED[route];
    if (!required) problems.push(`unknown route ${route}`);
    if (headers.authorization !== `Bearer ${this.secretKey}`) problems.push('authorization is not the configured secret key');
    const form: Record<string, string> = {};
    if (method === 'POST') {
      if (!String(headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) problems.push(`content-type ${headers['content-type']}`);
      for (const [k, v] of new URLSearchParams(body)) form[k] = v;
      if (!headers['idempotency-key']) problems.push('no Idempotency-Key header');
      for (const k of required ?? []) if (form[k] === undefined || form[k] === '') problems.push(`missing param ${k}`);
      const itemId = (this.subscriptions.get(subId ?? '') as { items?: { data: Array<{ id: string }> } } | undefined)?.items?.data[0]?.id;
      if (subId && itemId !== form['items[0][id]']) problems.push(`the update names item ${form['items[0][id]']}, the subscription's is ${itemId}`);
    }
    const key = typeof headers['idempotency-key'] === 'string' ? headers['idempotency-key'] : undefined;
    const record = (status: number, replayed: boolean): void => {
      this.requests.push({ method, path, headers, form, idempotencyKey: key, status, replayed, problems });
    };
    const send = (status: number, json: string, extra: Record<string, string> = {}): void => {
      res.writeHead(status, { 'content-type': 'application/json', 'request-id': `req_${++this.seq}`, ...extra }).end(json);
    };

    const fail = this.failures.shift();
    if (fail !== undefined) {
      record(fail, false);
      return send(fail, JSON.stringify({ error: { type: 'api_error', message: 'injected failure' } }));
    }
    if (problems.length > 0) {
      record(400, false);
      return send(400, JSON.stringify({ error: { type: 'invalid_request_error', message: problems.join('; ') } }));
    }
    const formText = JSON.stringify(form);
    const prior = key ? this.answers.get(key) : undefined;
    if (prior) {
      if (prior.form !== formText) {
        problems.push('Idempotency-Key reused with different parameters');
        record(400, false);
        return send(400, JSON.stringify({ error: { type: 'idempotency_error', message: 'Keys for idempotent requests can only be used with the same parameters' } }));
      }
      record(prior.status, true);
      return send(prior.status, prior.body, { 'idempotent-replayed': 'true' });
    }
    const body200 = JSON.stringify(this.answer(route, form, subId));
    if (key) this.answers.set(key, { form: formText, status: 200, body: body200 });
    record(200, false);
    send(200, body200);
  }

  private answer(route: string, f: Record<string, string>, subId?: string): Record<string, unknown> {
    const id = (p: string): string => `${p}_${randomBytes(7).toString('hex')}`;
    const metadata = Object.fromEntries(Object.entries(f).filter(([k]) => k.startsWith('metadata[')).map(([k, v]) => [k.slice(9, -1), v]));
    switch (route) {
      case 'POST /v1/customers':
        return { id: id('cus'), object: 'customer', email: f.email, name: f.name ?? null, metadata, livemode: false };
      case 'POST /v1/subscriptions': {
        const sub = {
          id: id('sub'),
          object: 'subscription',
          customer: f.customer,
          status: 'active',
          metadata,
          items: { object: 'list', data: [{ id: id('si'), object: 'subscription_item', price: { id: f['items[0][price]'], object: 'price' }, quantity: Number(f['items[0][quantity]']) }] },
        };
        this.subscriptions.set(sub.id, sub);
        return sub;
      }
      case 'GET /v1/subscriptions/:id':
        return this.subscriptions.get(subId as string) ?? {};
      case 'POST /v1/subscriptions/:id': {
        const sub = this.subscriptions.get(subId as string) as { items: { data: Array<{ id: string }> } } & Record<string, unknown>;
        const next = { ...sub, metadata, items: { object: 'list', data: [{ id: f['items[0][id]'], object: 'subscription_item', price: { id: f['items[0][price]'], object: 'price' }, quantity: Number(f['items[0][quantity]']) }] } };
        this.subscriptions.set(subId as string, next);
        return next;
      }
      case 'POST /v1/invoiceitems':
        return { id: id('ii'), object: 'invoiceitem', customer: f.customer, currency: f.currency, quantity: Number(f.quantity), unit_amount_decimal: f.unit_amount_decimal, description: f.description, metadata };
      case 'POST /v1/transfers':
        return { id: id('tr'), object: 'transfer', amount: Number(f.amount), currency: f.currency, destination: f.destination, transfer_group: f.transfer_group, metadata };
      default:
        return {
          object: 'billing.meter_event',
          created: Math.floor(Date.now() / 1000),
          event_name: f.event_name,
          identifier: f.identifier,
          livemode: false,
          payload: { stripe_customer_id: f['payload[stripe_customer_id]'], value: f['payload[value]'] },
          timestamp: Number(f.timestamp),
        };
    }
  }
}

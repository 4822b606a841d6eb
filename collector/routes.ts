import { createGunzip, type Gunzip } from 'node:zlib';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { CostEvent } from '../store/index.ts';
import { microsToUsd } from '../rules/index.ts';
import type { EventSink } from './sink.ts';
import { nativePriceFrom, type ChainReader, type NativePriceSource } from './chain.ts';
import { CollectorError } from './errors.ts';
import { httpErrorOf } from './http-errors.ts';
import { Ingestor, type IngestResult, type RawItem, type RejectedItem } from './ingest.ts';
import type { ForgeMetrics } from './metrics.ts';
import { cloudEventToRaw } from './cloudevents.ts';
import { decodeLogsJson, decodeLogsProtobuf, encodeLogsResponseProtobuf, encodeStatusProtobuf, recordToEvent } from './otlp.ts';
import { decodeTracesJson, decodeTracesProtobuf, spanToEvent } from './otlp-traces.ts';
import type { Pricing } from './pricing.ts';

export interface CollectorRoutesOptions {
  /** The store's batch writer (a Store's `writer`); write resolves once events are committed. */
  sink: EventSink;
  pricing: Pricing;
  /** Chain for tx receipts (viemChain(pricing.chain.rpcUrl)); absent = tx-hash events are rejected. */
  chain?: ChainReader;
  /** Default: from pricing.nativePrice (fixed, or the chainlink feed on `chain`). */
  nativePrice?: NativePriceSource;
  knownTenant(tenantId: string): boolean | Promise<boolean>;
  /** The app authenticates; an item for a tenant the caller may not write is rejected (403 for a single event). */
  canWriteTenant(request: FastifyRequest, tenantId: string): boolean;
  /** Called after the durable write (rule evaluation, live counters); its failure does not fail the request. */
  onAccepted?(events: CostEvent[]): void | Promise<void>;
  onError?(err: unknown): void;
  metrics: ForgeMetrics;
  expectedTasksDay?(): number | undefined | Promise<number | undefined>;
  /** Largest request body after decompression, bytes (default 4 MiB). */
  bodyLimit?: number;
  /** Most events in one /v1/events batch (default 1000). */
  maxBatchItems?: number;
  /** Serve GET /metrics (default true). */
  metricsRoute?: boolean;
  /** /metrics is served without a key: leave every tenant-labelled series out (default false). */
  metricsPublic?: boolean;
  now?(): number;
}

const PROTOBUF = 'application/x-protobuf';
const CLOUDEVENT = 'application/cloudevents+json';
const CLOUDEVENTS_BATCH = 'application/cloudevents-batch+json';

const errorSchema = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: {
        code: { type: 'string' },
        message: { type: 'string' },
        field: { type: 'string' },
        rejected: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              index: { type: 'integer' },
              path: { type: 'string' },
              code: { type: 'string' },
              field: { type: 'string' },
              reason: { type: 'string' },
            },
            required: ['index', 'code', 'field', 'reason'],
          },
        },
      },
      required: ['code', 'message'],
    },
    accepted: { $ref: 'forgeCollectorAccepted#' },
  },
  required: ['error'],
} as const;

const acceptedSchema = {
  $id: 'forgeCollectorAccepted',
  type: 'array',
  items: {
    type: 'object',
    properties: {
      index: { type: 'integer' },
      path: { type: 'string' },
      event_id: { type: 'string' },
      total_usd: { type: 'string', description: 'Cost_total_op computed by Forge, USD' },
      duplicate: { type: 'boolean', description: 'already accepted before (a retry); counted once' },
    },
    required: ['index', 'event_id', 'total_usd', 'duplicate'],
  },
} as const;

const errorResponses = { 400: errorSchema, 403: errorSchema, 409: errorSchema, 413: errorSchema, 415: errorSchema, 500: errorSchema, 503: errorSchema };

const CONFLICT = 'FORGE_ERR_EVENT_ID_CONFLICT';

/**
 * The status and code of a request none of whose rejected items is stored, by what they have in common:
 * 403 when every one is another tenant's, 409 when every one reuses an event id, 400 otherwise.
 */
function refusal(rejected: readonly RejectedItem[]): { status: 400 | 403 | 409; code: string } {
  if (rejected.every((x) => x.code === 'FORGE_ERR_FORBIDDEN_TENANT')) return { status: 403, code: 'FORGE_ERR_FORBIDDEN_TENANT' };
  if (rejected.every((x) => x.code === CONFLICT)) return { status: 409, code: CONFLICT };
  return { status: 400, code: 'FORGE_ERR_VALIDATION' };
}


function acceptedJson(r: IngestResult) {
  return r.accepted.map((a) => ({
    index: a.index,
    ...(a.path !== undefined ? { path: a.path } : {}),
    event_id: a.eventId,
    total_usd: microsToUsd(a.totalMicros),
    duplicate: a.duplicate,
  }));
}

/**
 * A JSON or CloudEvents batch with rejected items (the others stored): 403 only when nothing was stored and
 * every item was another tenant's; 409 when every rejected item reuses an event id (the rest was stored);
 * otherwise 400.
 */
function batchRefusal(rejected: readonly RejectedItem[], accepted: number): { status: 400 | 403 | 409; code: string } {
  const r = refusal(rejected);
  return r.status === 403 && accepted > 0 ? { status: 400, code: 'FORGE_ERR_VALIDATION' } : r;
}

function describe(r: RejectedItem): string {
  return `${r.path !== undefined ? `${r.path}: ` : ''}${r.field}: ${r.reason}`;
}

/**
 * The collector's HTTP face, a fastify plugin (register it without fastify-plugin so its content-type
 * parsers and error handler stay scoped to these routes):
 * - POST /v1/events: one `forge.task.finalized` event as JSON, or `{ "events": [...] }`.
 * - POST /v1/logs: OTLP/HTTP logs, protobuf or JSON, each log record with event name forge.task.finalized.
 * - POST /v1/traces: OTLP/HTTP traces, protobuf or JSON: OpenTelemetry GenAI spans (collector/otlp-traces.ts).
 * - CloudEvents on POST /v1/events (collector/cloudevents.ts).
 * - GET /metrics: Prometheus text exposition of ForgeMetrics.
 *
 * A 2xx answer means durably accepted: every accepted event has been committed by the sink (the store
 * write resolved) before the response is sent. See README "Collector".
 */
/**
 * The answer of an OTLP receiver (logs, traces), protobuf or JSON: 200 with partial_success when some items
 * were rejected; 403 / 400 naming the first rejected field when nothing was accepted.
 */
function answerOtlp(reply: FastifyReply, proto: boolean, r: IngestResult, total: number, o: { what: string; countField: string }): FastifyReply {
  const n = r.rejected.length;
  const message = n === 0 ? '' : `${n} of ${total} ${o.what} rejected: ${r.rejected.slice(0, 10).map(describe).join('; ')}${n > 10 ? '; ...' : ''}`;
  if (n > 0 && r.accepted.length === 0) {
    const { status, code } = refusal(r.rejected);
    // gRPC status: PERMISSION_DENIED, ALREADY_EXISTS, INVALID_ARGUMENT.
    if (proto) return reply.code(status).type(PROTOBUF).send(Buffer.from(encodeStatusProtobuf(status === 403 ? 7 : status === 409 ? 6 : 3, message)));
    const first = r.rejected[0]!;
    return reply.code(status).send({
      error: {
        code,
        message,
        field: `${first.path ?? ''}.${first.field}`,
        rejected: r.rejected.map((x) => ({ index: x.index, ...(x.path !== undefined ? { path: x.path } : {}), code: x.code, field: x.field, reason: x.reason })),
      },
    });
  }
  if (proto) return reply.code(200).type(PROTOBUF).send(Buffer.from(encodeLogsResponseProtobuf(n, message)));
  return reply.code(200).send({ ...(n > 0 ? { partialSuccess: { [o.countField]: n, errorMessage: message } } : {}), accepted: acceptedJson(r) });
}

export async function collectorRoutes(app: FastifyInstance, opts: CollectorRoutesOptions): Promise<void> {
  const metrics = opts.metrics;
  const stats = (opts.sink as { stats?: () => { queued?: number; inFlight?: number } }).stats;
  if (typeof stats === 'function') metrics.addBufferDepthSource(() => { const st = stats.call(opts.sink); return (st.queued ?? 0) + (st.inFlight ?? 0); });
  const ingestor = new Ingestor({
    sink: opts.sink,
    pricing: opts.pricing,
    nativePrice: opts.nativePrice ?? nativePriceFrom(opts.pricing.nativePrice, opts.chain),
    knownTenant: opts.knownTenant,
    metrics,
    ...(opts.chain ? { chain: opts.chain } : {}),
    ...(opts.onAccepted ? { onAccepted: opts.onAccepted } : {}),
    ...(opts.onError ? { onError: opts.onError } : {}),
    ...(opts.expectedTasksDay ? { expectedTasksDay: opts.expectedTasksDay } : {}),
    ...(opts.now ? { now: opts.now } : {}),
  });
  const bodyLimit = opts.bodyLimit ?? 4 * 1024 * 1024;
  const maxItems = opts.maxBatchItems ?? 1000;
  app.addSchema(acceptedSchema);

  app.addContentTypeParser(PROTOBUF, { parseAs: 'buffer', bodyLimit }, (_req, body, done) => done(null, body));
  app.addContentTypeParser([CLOUDEVENT, CLOUDEVENTS_BATCH], { parseAs: 'string', bodyLimit }, app.getDefaultJsonParser('error', 'error'));
  app.addHook('preParsing', async (req, _reply, payload) => {
    const enc = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
    if (enc === 'identity') return payload;
    if (enc !== 'gzip') throw new CollectorError('FORGE_ERR_UNSUPPORTED_MEDIA_TYPE', `unsupported content-encoding "${enc}" (gzip or identity)`, 415, 'content-encoding');
    const gunzip: Gunzip & { receivedEncodedLength?: number } = createGunzip();
    let encoded = 0;
    payload.on('data', (chunk: Buffer) => {
      encoded += chunk.length;
      gunzip.receivedEncodedLength = encoded;
    });
    payload.on('error', (e) => gunzip.destroy(e));
    return payload.pipe(gunzip);
  });

  // Forge's one mapping of failures (collector/http-errors.ts); this scope only adds the OTLP wire format
  // and the rejection metric. What it cannot answer (an internal failure) goes on to the app's handler,
  // which reports it and hides it.
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const mapped = httpErrorOf(err);
    if (!mapped) throw err;
    const { status, body } = mapped;
    if (status < 500) metrics.recordRejected(body.error.code);
    // OTLP exporters retry 503 honouring Retry-After; the same event ids make the retry safe.
    if (status === 503) void reply.header('retry-after', '1');
    if ((req.url.startsWith('/v1/logs') || req.url.startsWith('/v1/traces')) && isProtobuf(req)) {
      const grpc = status === 503 ? 14 : status === 401 ? 16 : status === 403 ? 7 : 3;
      return reply.code(status).type(PROTOBUF).send(Buffer.from(encodeStatusProtobuf(grpc, body.error.message)));
    }
    return reply.code(status).send(body);
  });

  const canWrite = (req: FastifyRequest) => (tenantId: string) => opts.canWriteTenant(req, tenantId);

  app.post(
    '/v1/events',
    {
      bodyLimit,
      preValidation: async (req) => {
        if (!isJson(req)) throw new CollectorError('FORGE_ERR_UNSUPPORTED_MEDIA_TYPE', `content type must be application/json, got "${req.headers['content-type'] ?? ''}"`, 415, 'content-type');
      },
      schema: {
        summary: 'Ingest forge.task.finalized events (JSON or CloudEvents)',
        description:
          'One event object, or {"events": [...]} (at most maxBatchItems). 200 = every listed event is durably stored. ' +
          'As CloudEvents: one (application/cloudevents+json) or a list (application/cloudevents-batch+json) of type forge.task.finalized; ' +
          'id + source is the idempotency key, subject the tenant, data the task event.',
        body: { anyOf: [{ type: 'object' }, { type: 'array', items: { type: 'object' } }], description: 'a forge.task.finalized event, or { events: [...] }; a CloudEvent, or a list of them (batch content type)' },
        response: {
          200: { type: 'object', properties: { accepted: { $ref: 'forgeCollectorAccepted#' } }, required: ['accepted'] },
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      const ctype = (req.headers['content-type'] ?? '').toLowerCase();
      if (ctype.startsWith(CLOUDEVENT) || ctype.startsWith(CLOUDEVENTS_BATCH)) return ingestCloudEvents(req, reply, ctype.startsWith(CLOUDEVENTS_BATCH));
      if (Array.isArray(req.body)) throw new CollectorError('FORGE_ERR_VALIDATION', 'body must be object', 400, 'body');
      const body = req.body as Record<string, unknown>;
      const isBatch = Object.hasOwn(body, 'events');
      let items: RawItem[];
      if (isBatch) {
        const evs = body.events;
        if (!Array.isArray(evs)) throw new CollectorError('FORGE_ERR_VALIDATION', 'events: must be a list of events', 400, 'events');
        if (evs.length === 0) throw new CollectorError('FORGE_ERR_VALIDATION', 'events: must not be empty', 400, 'events');
        if (evs.length > maxItems) throw new CollectorError('FORGE_ERR_VALIDATION', `events: at most ${maxItems} events per request, got ${evs.length}`, 400, 'events');
        const extra = Object.keys(body).find((k) => k !== 'events');
        if (extra !== undefined) throw new CollectorError('FORGE_ERR_VALIDATION', `${extra}: unknown field next to events`, 400, extra);
        items = evs.map((raw, index) => ({ index, raw }));
      } else items = [{ index: 0, raw: body }];

      const r = await ingestor.ingest(items, canWrite(req));
      if (r.rejected.length === 0) return reply.code(200).send({ accepted: acceptedJson(r) });
      if (!isBatch) {
        const x = r.rejected[0]!;
        return reply.code(refusal([x]).status).send({ error: { code: x.code, message: `${x.field}: ${x.reason}`, field: x.field } });
      }
      const { status, code } = batchRefusal(r.rejected, r.accepted.length);
      return reply.code(status).send({
        error: {
          code,
          message: `${r.rejected.length} of ${items.length} events rejected (nothing of them stored; the other ${r.accepted.length} were stored): ${describe(r.rejected[0]!)}`,
          rejected: r.rejected.map((x) => ({ index: x.index, code: x.code, field: `events[${x.index}].${x.field}`, reason: x.reason })),
        },
        accepted: acceptedJson(r),
      });
    },
  );

  /** CloudEvents: each one mapped to a task event (collector/cloudevents.ts), then the same pipeline. */
  async function ingestCloudEvents(req: FastifyRequest, reply: FastifyReply, batch: boolean): Promise<FastifyReply> {
    const list: unknown[] = batch ? (Array.isArray(req.body) ? req.body : []) : [req.body];
    if (batch && !Array.isArray(req.body)) throw new CollectorError('FORGE_ERR_VALIDATION', 'body: a CloudEvents batch must be a JSON list', 400, 'body');
    if (list.length === 0) throw new CollectorError('FORGE_ERR_VALIDATION', 'body: the batch must not be empty', 400, 'body');
    if (list.length > maxItems) throw new CollectorError('FORGE_ERR_VALIDATION', `body: at most ${maxItems} CloudEvents per request, got ${list.length}`, 400, 'body');
    const items: RawItem[] = [];
    const pre: RejectedItem[] = [];
    list.forEach((ce, index) => {
      const m = cloudEventToRaw(ce);
      if (m.ok) items.push({ index, raw: m.raw });
      else pre.push({ index, code: 'FORGE_ERR_VALIDATION', field: m.field, reason: m.reason });
    });
    const r = await ingestor.ingest(items, canWrite(req));
    // A task event's field is the CloudEvent's data field; its id and tenant are the CloudEvent's id and subject.
    const ceField = (f: string): string => (f === 'event_id' ? 'id' : f === 'tenant_id' ? 'subject' : `data.${f}`);
    const rejected = [...pre, ...r.rejected.map((x) => ({ ...x, field: ceField(x.field) }))].sort((a, b) => a.index - b.index);
    if (rejected.length === 0) return reply.code(200).send({ accepted: acceptedJson(r) });
    const where = (x: RejectedItem): string => (batch ? `[${x.index}].${x.field}` : x.field);
    if (!batch) {
      const x = rejected[0]!;
      return reply.code(refusal([x]).status).send({ error: { code: x.code, message: `${x.field}: ${x.reason}`, field: x.field } });
    }
    const { status, code } = batchRefusal(rejected, r.accepted.length);
    return reply.code(status).send({
      error: {
        code,
        message: `${rejected.length} of ${list.length} CloudEvents rejected (nothing of them stored; the other ${r.accepted.length} were stored): ${where(rejected[0]!)}: ${rejected[0]!.reason}`,
        rejected: rejected.map((x) => ({ index: x.index, code: x.code, field: where(x), reason: x.reason })),
      },
      accepted: acceptedJson(r),
    });
  }

  app.post(
    '/v1/traces',
    {
      bodyLimit,
      schema: {
        summary: 'OTLP/HTTP traces receiver (protobuf or JSON) for OpenTelemetry GenAI spans',
        description:
          'Spans reporting gen_ai.usage.input_tokens / output_tokens become cost events (event id otel:<trace id>:<span id>, ' +
          'tenant from forge.tenant.id, run from forge.run.id or gen_ai.conversation.id, task from forge.task.id; see collector/otlp-traces.ts). ' +
          'Other spans are ignored. 200 with partial_success when some spans were rejected; 400 when nothing was accepted.',
        response: {
          200: { type: 'object', properties: { partialSuccess: { type: 'object', properties: { rejectedSpans: { type: 'integer' }, errorMessage: { type: 'string' } } }, accepted: { $ref: 'forgeCollectorAccepted#' } } },
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      const proto = isProtobuf(req);
      if (!proto && !isJson(req)) {
        throw new CollectorError('FORGE_ERR_UNSUPPORTED_MEDIA_TYPE', `content type must be ${PROTOBUF} or application/json, got "${req.headers['content-type'] ?? ''}"`, 415, 'content-type');
      }
      const spans = proto ? decodeTracesProtobuf(req.body as Buffer) : decodeTracesJson(req.body);
      const items: RawItem[] = [];
      for (const span of spans) {
        const raw = spanToEvent(span);
        if (raw !== undefined) items.push({ index: items.length, path: span.path, raw });
      }
      // ExportTraceServiceResponse has the logs response's shape (partial_success: rejected count = 1, error_message = 2).
      return answerOtlp(reply, proto, await ingestor.ingest(items, canWrite(req)), items.length, { what: 'GenAI spans', countField: 'rejectedSpans' });
    },
  );

  app.post(
    '/v1/logs',
    {
      bodyLimit,
      schema: {
        summary: 'OTLP/HTTP logs receiver (protobuf or JSON) for forge.task.finalized log records',
        description:
          'Log records whose event_name (or event.name attribute) is forge.task.finalized carry one event each (body map, or attributes). ' +
          'Other records are ignored. 200 with partial_success when some records were rejected; 400 when nothing was accepted.',
        response: {
          200: { type: 'object', properties: { partialSuccess: { type: 'object', properties: { rejectedLogRecords: { type: 'integer' }, errorMessage: { type: 'string' } } }, accepted: { $ref: 'forgeCollectorAccepted#' } } },
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      const proto = isProtobuf(req);
      if (!proto && !isJson(req)) {
        throw new CollectorError('FORGE_ERR_UNSUPPORTED_MEDIA_TYPE', `content type must be ${PROTOBUF} or application/json, got "${req.headers['content-type'] ?? ''}"`, 415, 'content-type');
      }
      const records = proto ? decodeLogsProtobuf(req.body as Buffer) : decodeLogsJson(req.body);
      const items: RawItem[] = [];
      records.forEach((rec) => {
        const raw = recordToEvent(rec);
        if (raw !== undefined) items.push({ index: items.length, path: rec.path, raw });
      });
      return answerOtlp(reply, proto, await ingestor.ingest(items, canWrite(req)), items.length, { what: 'forge.task.finalized records', countField: 'rejectedLogRecords' });
    },
  );

  if (opts.metricsRoute !== false) {
    app.get(
      '/metrics',
      { schema: { summary: 'Prometheus metrics (text format 0.0.4)', response: { 200: { type: 'string' } } } },
      async (_req, reply: FastifyReply) => reply.type('text/plain; version=0.0.4; charset=utf-8').send(await metrics.render({ tenantSeries: opts.metricsPublic !== true })),
    );
  }
}

function isJson(req: FastifyRequest): boolean {
  return /^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(req.headers['content-type'] ?? '');
}

function isProtobuf(req: FastifyRequest): boolean {
  return (req.headers['content-type'] ?? '').toLowerCase().startsWith(PROTOBUF);
}

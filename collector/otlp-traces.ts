/**
 * OTLP/HTTP traces in (`ExportTraceServiceRequest`, protobuf or JSON): spans following the OpenTelemetry
 * GenAI semantic conventions become Forge task events. The protobuf walk uses the same reader as the logs
 * (collector/otlp.ts), by the field numbers of opentelemetry/proto/trace/v1/trace.proto.
 *
 * A span is a cost event when it reports token usage (`gen_ai.usage.input_tokens` or
 * `gen_ai.usage.output_tokens`); other spans are ignored. Its fields (span attributes first, then the
 * resource's):
 * - event_id: `otel:<trace id>:<span id>` (hex), so a span re-exported is counted once;
 * - tenant_id: `forge.tenant.id` (required);
 * - run_id: `forge.run.id`, else `gen_ai.conversation.id`, else the trace id;
 * - task_id: `forge.task.id`, else the trace id;
 * - task_type: `forge.task.type`, else `gen_ai.operation.name`, else `gen_ai`;
 * - model: `gen_ai.response.model`, else `gen_ai.request.model` (priced from the pricing file's llm models);
 * - environment: `forge.environment`, else `gen_ai` (NO_COMPUTE_ENVIRONMENT: no compute is charged for a span);
 * - status: failed when the span's status is ERROR, else success;
 * - finalized_at: the span's end time (deterministic, so a re-export has the same key in the log);
 * - tokens: input and output, with `gen_ai.usage.cache_read.input_tokens`,
 *   `gen_ai.usage.cache_creation.input_tokens` (parts of input) and `gen_ai.usage.reasoning.output_tokens`
 *   (part of output) priced as their own classes.
 * `gen_ai.provider.name` and `gen_ai.agent.id` are read but not stored (the log has no column for them yet).
 */
import { decodeKeyValue, isObj, jsonKeyValues, list, OtlpDecodeError, setSafe, Walker, WIRE_I64, WIRE_LEN, WIRE_VARINT, type AnyJs } from './otlp.ts';

export interface OtlpSpan {
  /** resourceSpans[i].scopeSpans[j].spans[k] */
  path: string;
  /** Lowercase hex. */
  traceId: string;
  spanId: string;
  name: string;
  /** end_time_unix_nano as a decimal string. */
  endTimeUnixNano: string;
  /** Status code: 0 unset, 1 ok, 2 error. */
  statusCode: number;
  attributes: Record<string, AnyJs>;
  resource: Record<string, AnyJs>;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Decodes a protobuf ExportTraceServiceRequest into its spans (in request order). */
export function decodeTracesProtobuf(buf: Uint8Array): OtlpSpan[] {
  const spans: OtlpSpan[] = [];
  const top = new Walker(buf, '');
  let ri = 0;
  top.fields((f, wire) => {
    if (f !== 1) return false; // resource_spans
    top.expect(wire, WIRE_LEN, 'resource_spans');
    const rs = top.sub(`resourceSpans[${ri}]`);
    const resource: Record<string, AnyJs> = {};
    const mine: OtlpSpan[] = [];
    let si = 0;
    rs.fields((rf, rw) => {
      if (rf === 1) {
        // resource: Resource { repeated KeyValue attributes = 1 }
        rs.expect(rw, WIRE_LEN, 'resource');
        const r = rs.sub(`resourceSpans[${ri}].resource`);
        r.fields((af, aw) => {
          if (af !== 1) return false;
          r.expect(aw, WIRE_LEN, 'attributes');
          const [k, v] = decodeKeyValue(r.sub(`resourceSpans[${ri}].resource.attributes`), 0);
          setSafe(resource, k, v);
          return true;
        });
        return true;
      }
      if (rf !== 2) return false; // scope_spans
      rs.expect(rw, WIRE_LEN, 'scope_spans');
      const ss = rs.sub(`resourceSpans[${ri}].scopeSpans[${si}]`);
      let k = 0;
      ss.fields((sf, sw) => {
        if (sf !== 2) return false; // spans
        ss.expect(sw, WIRE_LEN, 'spans');
        const path = `resourceSpans[${ri}].scopeSpans[${si}].spans[${k}]`;
        const sp = ss.sub(path);
        const span: OtlpSpan = { path, traceId: '', spanId: '', name: '', endTimeUnixNano: '0', statusCode: 0, attributes: {}, resource };
        sp.fields((pf, pw) => {
          switch (pf) {
            case 1:
              sp.expect(pw, WIRE_LEN, 'trace_id');
              span.traceId = hex(sp.bytes());
              return true;
            case 2:
              sp.expect(pw, WIRE_LEN, 'span_id');
              span.spanId = hex(sp.bytes());
              return true;
            case 5:
              sp.expect(pw, WIRE_LEN, 'name');
              span.name = sp.string();
              return true;
            case 8:
              sp.expect(pw, WIRE_I64, 'end_time_unix_nano');
              span.endTimeUnixNano = sp.fixed64();
              return true;
            case 9: {
              sp.expect(pw, WIRE_LEN, 'attributes');
              const [key, v] = decodeKeyValue(sp.sub(`${path}.attributes`), 0);
              setSafe(span.attributes, key, v);
              return true;
            }
            case 15: {
              // status: Status { string message = 2; StatusCode code = 3 }
              sp.expect(pw, WIRE_LEN, 'status');
              const st = sp.sub(`${path}.status`);
              st.fields((tf, tw) => {
                if (tf !== 3) return false;
                st.expect(tw, WIRE_VARINT, 'code');
                span.statusCode = Number(st.int64());
                return true;
              });
              return true;
            }
            default:
              return false;
          }
        });
        mine.push(span);
        k++;
        return true;
      });
      si++;
      return true;
    });
    spans.push(...mine);
    ri++;
    return true;
  });
  return spans;
}

function jsonHexId(v: unknown, where: string, bytes: number): string {
  if (typeof v !== 'string' || !new RegExp(`^[0-9a-fA-F]{${bytes * 2}}$`).test(v)) throw new OtlpDecodeError(where, `must be ${bytes} bytes as hex`);
  return v.toLowerCase();
}

/** Decodes an OTLP JSON ExportTraceServiceRequest (already JSON.parse'd). */
export function decodeTracesJson(body: unknown): OtlpSpan[] {
  if (!isObj(body)) throw new OtlpDecodeError('body', 'must be an ExportTraceServiceRequest object');
  const spans: OtlpSpan[] = [];
  list(body.resourceSpans ?? body.resource_spans, 'resourceSpans').forEach((rs, ri) => {
    if (!isObj(rs)) throw new OtlpDecodeError(`resourceSpans[${ri}]`, 'must be an object');
    const res = rs.resource;
    const resource = isObj(res) ? jsonKeyValues(list(res.attributes, `resourceSpans[${ri}].resource.attributes`), `resourceSpans[${ri}].resource.attributes`, 0) : {};
    list(rs.scopeSpans ?? rs.scope_spans, `resourceSpans[${ri}].scopeSpans`).forEach((ss, si) => {
      if (!isObj(ss)) throw new OtlpDecodeError(`resourceSpans[${ri}].scopeSpans[${si}]`, 'must be an object');
      list(ss.spans, `resourceSpans[${ri}].scopeSpans[${si}].spans`).forEach((sp, k) => {
        const path = `resourceSpans[${ri}].scopeSpans[${si}].spans[${k}]`;
        if (!isObj(sp)) throw new OtlpDecodeError(path, 'must be an object');
        const t = sp.endTimeUnixNano ?? sp.end_time_unix_nano ?? '0';
        if (!(typeof t === 'string' && /^\d{1,20}$/.test(t)) && !(typeof t === 'number' && Number.isInteger(t) && t >= 0)) {
          throw new OtlpDecodeError(`${path}.endTimeUnixNano`, 'must be unsigned integer nanoseconds');
        }
        const status = sp.status;
        const code = isObj(status) ? status.code : undefined;
        spans.push({
          path,
          traceId: jsonHexId(sp.traceId ?? sp.trace_id, `${path}.traceId`, 16),
          spanId: jsonHexId(sp.spanId ?? sp.span_id, `${path}.spanId`, 8),
          name: typeof sp.name === 'string' ? sp.name : '',
          endTimeUnixNano: typeof t === 'number' ? BigInt(t).toString() : t,
          statusCode: code === 2 || code === 'STATUS_CODE_ERROR' ? 2 : typeof code === 'number' ? code : 0,
          attributes: jsonKeyValues(list(sp.attributes, `${path}.attributes`), `${path}.attributes`, 0),
          resource,
        });
      });
    });
  });
  return spans;
}

const USAGE_INPUT = 'gen_ai.usage.input_tokens';
const USAGE_OUTPUT = 'gen_ai.usage.output_tokens';

/**
 * The Forge task event a GenAI span carries (see the file comment), or undefined when the span reports no
 * token usage (ignored). Values are passed on as found; the event schema validates them and names the field.
 */
export function spanToEvent(span: OtlpSpan): Record<string, AnyJs> | undefined {
  const a = span.attributes;
  if (a[USAGE_INPUT] === undefined && a[USAGE_OUTPUT] === undefined) return undefined;
  const get = (...keys: string[]): AnyJs | undefined => {
    for (const k of keys) {
      if (Object.hasOwn(a, k) && a[k] !== null && a[k] !== '') return a[k];
      if (Object.hasOwn(span.resource, k) && span.resource[k] !== null && span.resource[k] !== '') return span.resource[k];
    }
    return undefined;
  };
  const tokens = (k: string): AnyJs | undefined => (Object.hasOwn(a, k) ? a[k] : undefined);
  const usage: Record<string, AnyJs> = {
    model: get('gen_ai.response.model', 'gen_ai.request.model') ?? '',
    input_tokens: tokens(USAGE_INPUT) ?? 0,
    output_tokens: tokens(USAGE_OUTPUT) ?? 0,
  };
  const classes = [
    ['cache_read_input_tokens', 'gen_ai.usage.cache_read.input_tokens'],
    ['cache_creation_input_tokens', 'gen_ai.usage.cache_creation.input_tokens'],
    ['reasoning_output_tokens', 'gen_ai.usage.reasoning.output_tokens'],
  ] as const;
  for (const [field, attr] of classes) {
    const v = tokens(attr);
    if (v !== undefined) usage[field] = v;
  }
  const ev: Record<string, AnyJs> = {
    event_id: `otel:${span.traceId}:${span.spanId}`,
    run_id: get('forge.run.id', 'gen_ai.conversation.id') ?? span.traceId,
    task_id: get('forge.task.id') ?? span.traceId,
    task_type: get('forge.task.type', 'gen_ai.operation.name') ?? 'gen_ai',
    model: usage.model ?? '',
    environment: get('forge.environment') ?? 'gen_ai',
    status: span.statusCode === 2 ? 'failed' : 'success',
    finalized_at: Number(BigInt(span.endTimeUnixNano) / 1_000_000n),
    rli_eval_usd: '0',
    task_hours: '0',
    llm: [usage],
  };
  const tenant = get('forge.tenant.id');
  if (tenant !== undefined) ev.tenant_id = tenant;
  return ev;
}

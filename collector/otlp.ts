/**
 * OTLP/HTTP logs in (`ExportLogsServiceRequest`, protobuf or JSON) and the responses out.
 *
 * otlp-transformer 0.223 no longer ships protobufjs definitions: it serializes with its own small
 * ProtobufWriter and parses responses with ProtobufReader. We use those same two classes (deep imports of
 * the pinned version) and walk the logs messages by their field numbers from
 * opentelemetry/proto/logs/v1/logs.proto and common/v1/common.proto. The tests check the walk against
 * the SDK's own ProtobufLogsSerializer and JsonLogsSerializer.
 */
import { ProtobufReader } from '@opentelemetry/otlp-transformer/build/src/common/protobuf/protobuf-reader.js';
import { ProtobufWriter } from '@opentelemetry/otlp-transformer/build/src/common/protobuf/protobuf-writer.js';
import { TASK_FINALIZED } from './event.ts';

/** A decoded attribute or body value (AnyValue) as plain JS. int64 beyond 2^53 stays a decimal string. */
export type AnyJs = string | number | boolean | null | AnyJs[] | { [k: string]: AnyJs };

export interface OtlpLogRecord {
  /** Where it sits in the request: resourceLogs[i].scopeLogs[j].logRecords[k]. */
  path: string;
  /** LogRecord.event_name (or the `event.name` attribute). */
  eventName: string;
  /** time_unix_nano as a decimal string ('0' when unset). */
  timeUnixNano: string;
  body: AnyJs | undefined;
  attributes: Record<string, AnyJs>;
}

export class OtlpDecodeError extends Error {
  readonly code = 'FORGE_ERR_VALIDATION';
  readonly statusCode = 400;
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

const MAX_DEPTH = 16;
export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;

export class Walker {
  readonly r: ProtobufReader;
  constructor(
    readonly buf: Uint8Array,
    readonly where: string,
  ) {
    this.r = new ProtobufReader(buf);
  }
  fail(msg: string): never {
    throw new OtlpDecodeError(this.where || 'body', `invalid protobuf: ${msg}`);
  }
  /** Iterates the fields of this message; the callback reads the value (or returns false to skip it). */
  fields(fn: (field: number, wire: number) => boolean): void {
    try {
      while (!this.r.isAtEnd()) {
        const { fieldNumber, wireType } = this.r.readTag();
        if (fieldNumber === 0) this.fail('field number 0');
        if (!fn(fieldNumber, wireType)) {
          const before = this.r.pos;
          this.r.skip(wireType);
          if (this.r.pos > this.buf.length || this.r.pos < before) this.fail('truncated field');
        }
      }
    } catch (e) {
      if (e instanceof OtlpDecodeError) throw e;
      this.fail((e as Error).message);
    }
  }
  expect(wire: number, want: number, what: string): void {
    if (wire !== want) this.fail(`${what} has wire type ${wire}, expected ${want}`);
  }
  bytes(): Uint8Array {
    return this.r.readBytes();
  }
  string(): string {
    return this.r.readString();
  }
  /** int64 varint as a JS number when exact, else a decimal string; negative two's complement handled. */
  int64(): number | string {
    const start = this.r.pos;
    this.r.readVarint();
    let v = 0n;
    let shift = 0n;
    for (let i = start; i < this.r.pos; i++) {
      v |= BigInt(this.buf[i]! & 0x7f) << shift;
      shift += 7n;
    }
    v = BigInt.asIntN(64, v);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
  }
  fixed64(): string {
    if (this.r.pos + 8 > this.buf.length) this.fail('truncated fixed64');
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.r.pos, 8).getBigUint64(0, true);
    this.r.pos += 8;
    return v.toString();
  }
  double(): number {
    if (this.r.pos + 8 > this.buf.length) this.fail('truncated double');
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.r.pos, 8).getFloat64(0, true);
    this.r.pos += 8;
    return v;
  }
  sub(where: string): Walker {
    return new Walker(this.bytes(), where);
  }
}

function decodeAnyValue(w: Walker, depth: number): AnyJs {
  if (depth > MAX_DEPTH) w.fail('values nested too deeply');
  let out: AnyJs = null;
  w.fields((f, wire) => {
    switch (f) {
      case 1: // string_value
        w.expect(wire, WIRE_LEN, 'string_value');
        out = w.string();
        return true;
      case 2: // bool_value
        w.expect(wire, WIRE_VARINT, 'bool_value');
        out = w.int64() !== 0;
        return true;
      case 3: // int_value
        w.expect(wire, WIRE_VARINT, 'int_value');
        out = w.int64();
        return true;
      case 4: // double_value
        w.expect(wire, WIRE_I64, 'double_value');
        out = w.double();
        return true;
      case 5: {
        // array_value: ArrayValue { repeated AnyValue values = 1 }
        w.expect(wire, WIRE_LEN, 'array_value');
        const arr: AnyJs[] = [];
        const a = w.sub(w.where);
        a.fields((af, aw) => {
          if (af !== 1) return false;
          a.expect(aw, WIRE_LEN, 'values');
          arr.push(decodeAnyValue(a.sub(`${w.where}[${arr.length}]`), depth + 1));
          return true;
        });
        out = arr;
        return true;
      }
      case 6: {
        // kvlist_value: KeyValueList { repeated KeyValue values = 1 }
        w.expect(wire, WIRE_LEN, 'kvlist_value');
        const obj: Record<string, AnyJs> = {};
        const l = w.sub(w.where);
        l.fields((lf, lw) => {
          if (lf !== 1) return false;
          l.expect(lw, WIRE_LEN, 'values');
          const [k, v] = decodeKeyValue(l.sub(w.where), depth + 1);
          setSafe(obj, k, v);
          return true;
        });
        out = obj;
        return true;
      }
      case 7: // bytes_value, kept as base64
        w.expect(wire, WIRE_LEN, 'bytes_value');
        out = Buffer.from(w.bytes()).toString('base64');
        return true;
      default:
        return false;
    }
  });
  return out;
}

export function decodeKeyValue(w: Walker, depth: number): [string, AnyJs] {
  let key = '';
  let value: AnyJs = null;
  w.fields((f, wire) => {
    if (f === 1) {
      w.expect(wire, WIRE_LEN, 'key');
      key = w.string();
      return true;
    }
    if (f === 2) {
      w.expect(wire, WIRE_LEN, 'value');
      value = decodeAnyValue(w.sub(w.where), depth);
      return true;
    }
    return false;
  });
  return [key, value];
}

export function setSafe(obj: Record<string, AnyJs>, k: string, v: AnyJs): void {
  // Object.defineProperty keeps a key named "__proto__" an ordinary property.
  Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true });
}

/** Decodes a protobuf ExportLogsServiceRequest into its log records (in request order). */
export function decodeLogsProtobuf(buf: Uint8Array): OtlpLogRecord[] {
  const records: OtlpLogRecord[] = [];
  const top = new Walker(buf, '');
  let ri = 0;
  top.fields((f, wire) => {
    if (f !== 1) return false; // resource_logs
    top.expect(wire, WIRE_LEN, 'resource_logs');
    const rl = top.sub(`resourceLogs[${ri}]`);
    let si = 0;
    rl.fields((rf, rw) => {
      if (rf !== 2) return false; // scope_logs
      rl.expect(rw, WIRE_LEN, 'scope_logs');
      const sl = rl.sub(`resourceLogs[${ri}].scopeLogs[${si}]`);
      let li = 0;
      sl.fields((sf, sw) => {
        if (sf !== 2) return false; // log_records
        sl.expect(sw, WIRE_LEN, 'log_records');
        const path = `resourceLogs[${ri}].scopeLogs[${si}].logRecords[${li}]`;
        const lr = sl.sub(path);
        const rec: OtlpLogRecord = { path, eventName: '', timeUnixNano: '0', body: undefined, attributes: {} };
        lr.fields((lf, lw) => {
          switch (lf) {
            case 1: // time_unix_nano
              lr.expect(lw, WIRE_I64, 'time_unix_nano');
              rec.timeUnixNano = lr.fixed64();
              return true;
            case 5: // body
              lr.expect(lw, WIRE_LEN, 'body');
              rec.body = decodeAnyValue(lr.sub(`${path}.body`), 0) ?? undefined;
              return true;
            case 6: {
              // attributes
              lr.expect(lw, WIRE_LEN, 'attributes');
              const [k, v] = decodeKeyValue(lr.sub(`${path}.attributes`), 0);
              setSafe(rec.attributes, k, v);
              return true;
            }
            case 12: // event_name
              lr.expect(lw, WIRE_LEN, 'event_name');
              rec.eventName = lr.string();
              return true;
            default:
              return false;
          }
        });
        records.push(rec);
        li++;
        return true;
      });
      si++;
      return true;
    });
    ri++;
    return true;
  });
  return records;
}

// ---- OTLP JSON (protobuf JSON mapping: camelCase keys, int64 as number or string, bytes as base64) ----

export function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function jsonAnyValue(v: unknown, where: string, depth: number): AnyJs {
  if (depth > MAX_DEPTH) throw new OtlpDecodeError(where, 'values nested too deeply');
  if (!isObj(v)) throw new OtlpDecodeError(where, 'must be an AnyValue object');
  if ('stringValue' in v && v.stringValue != null) {
    if (typeof v.stringValue !== 'string') throw new OtlpDecodeError(`${where}.stringValue`, 'must be a string');
    return v.stringValue;
  }
  if ('boolValue' in v && v.boolValue != null) {
    if (typeof v.boolValue !== 'boolean') throw new OtlpDecodeError(`${where}.boolValue`, 'must be a boolean');
    return v.boolValue;
  }
  if ('intValue' in v && v.intValue != null) {
    const iv = v.intValue;
    if (typeof iv === 'number' && Number.isInteger(iv)) return Number.isSafeInteger(iv) ? iv : BigInt(iv).toString();
    if (typeof iv === 'string' && /^-?\d{1,20}$/.test(iv)) {
      const n = Number(iv);
      return Number.isSafeInteger(n) ? n : iv;
    }
    throw new OtlpDecodeError(`${where}.intValue`, 'must be an integer (number or decimal string)');
  }
  if ('doubleValue' in v && v.doubleValue != null) {
    const dv = v.doubleValue;
    if (typeof dv === 'number') return dv;
    if (dv === 'NaN' || dv === 'Infinity' || dv === '-Infinity') return Number(dv);
    if (typeof dv === 'string' && /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(dv)) return Number(dv);
    throw new OtlpDecodeError(`${where}.doubleValue`, 'must be a number');
  }
  if ('arrayValue' in v && v.arrayValue != null) {
    const av = v.arrayValue;
    const values = isObj(av) ? (av.values ?? []) : undefined;
    if (!Array.isArray(values)) throw new OtlpDecodeError(`${where}.arrayValue.values`, 'must be a list');
    return values.map((x, i) => jsonAnyValue(x, `${where}.arrayValue.values[${i}]`, depth + 1));
  }
  if ('kvlistValue' in v && v.kvlistValue != null) {
    const kv = v.kvlistValue;
    const values = isObj(kv) ? (kv.values ?? []) : undefined;
    if (!Array.isArray(values)) throw new OtlpDecodeError(`${where}.kvlistValue.values`, 'must be a list');
    return jsonKeyValues(values, `${where}.kvlistValue.values`, depth + 1);
  }
  if ('bytesValue' in v && v.bytesValue != null) {
    if (typeof v.bytesValue !== 'string') throw new OtlpDecodeError(`${where}.bytesValue`, 'must be base64');
    return v.bytesValue;
  }
  return null;
}

export function jsonKeyValues(values: unknown[], where: string, depth: number): Record<string, AnyJs> {
  const out: Record<string, AnyJs> = {};
  values.forEach((kv, i) => {
    if (!isObj(kv) || typeof kv.key !== 'string') throw new OtlpDecodeError(`${where}[${i}].key`, 'must be a string');
    setSafe(out, kv.key, kv.value === undefined || kv.value === null ? null : jsonAnyValue(kv.value, `${where}[${i}].value`, depth));
  });
  return out;
}

export function list(v: unknown, where: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new OtlpDecodeError(where, 'must be a list');
  return v;
}

/** Decodes an OTLP JSON ExportLogsServiceRequest (already JSON.parse'd). */
export function decodeLogsJson(body: unknown): OtlpLogRecord[] {
  if (!isObj(body)) throw new OtlpDecodeError('body', 'must be an ExportLogsServiceRequest object');
  const records: OtlpLogRecord[] = [];
  list(body.resourceLogs ?? body.resource_logs, 'resourceLogs').forEach((rl, ri) => {
    if (!isObj(rl)) throw new OtlpDecodeError(`resourceLogs[${ri}]`, 'must be an object');
    list(rl.scopeLogs ?? rl.scope_logs, `resourceLogs[${ri}].scopeLogs`).forEach((sl, si) => {
      if (!isObj(sl)) throw new OtlpDecodeError(`resourceLogs[${ri}].scopeLogs[${si}]`, 'must be an object');
      list(sl.logRecords ?? sl.log_records, `resourceLogs[${ri}].scopeLogs[${si}].logRecords`).forEach((lr, li) => {
        const path = `resourceLogs[${ri}].scopeLogs[${si}].logRecords[${li}]`;
        if (!isObj(lr)) throw new OtlpDecodeError(path, 'must be an object');
        const t = lr.timeUnixNano ?? lr.time_unix_nano ?? '0';
        if (!(typeof t === 'string' && /^\d{1,20}$/.test(t)) && !(typeof t === 'number' && Number.isInteger(t) && t >= 0)) {
          throw new OtlpDecodeError(`${path}.timeUnixNano`, 'must be unsigned integer nanoseconds');
        }
        const en = lr.eventName ?? lr.event_name ?? '';
        if (typeof en !== 'string') throw new OtlpDecodeError(`${path}.eventName`, 'must be a string');
        records.push({
          path,
          eventName: en,
          timeUnixNano: typeof t === 'number' ? BigInt(t).toString() : t,
          body: lr.body === undefined || lr.body === null ? undefined : (jsonAnyValue(lr.body, `${path}.body`, 0) ?? undefined),
          attributes: jsonKeyValues(list(lr.attributes, `${path}.attributes`), `${path}.attributes`, 0),
        });
      });
    });
  });
  return records;
}

/**
 * The Forge event a log record carries, or undefined when the record is some other log (ignored).
 * The event is the body when it is a map, else the attributes (without `event.name`). finalized_at
 * defaults to the record's timestamp.
 */
export function recordToEvent(rec: OtlpLogRecord): Record<string, AnyJs> | undefined {
  const name = rec.eventName || (typeof rec.attributes['event.name'] === 'string' ? rec.attributes['event.name'] : '');
  if (name !== TASK_FINALIZED) return undefined;
  let ev: Record<string, AnyJs>;
  if (rec.body !== null && typeof rec.body === 'object' && !Array.isArray(rec.body)) ev = { ...rec.body };
  else {
    ev = { ...rec.attributes };
    delete ev['event.name'];
  }
  if (ev.finalized_at === undefined && rec.timeUnixNano !== '0') ev.finalized_at = Number(BigInt(rec.timeUnixNano) / 1_000_000n);
  return ev;
}

// ---- responses ----

/** ExportLogsServiceResponse; partial_success only when something was rejected. */
export function encodeLogsResponseProtobuf(rejected: number, message: string): Uint8Array {
  const w = new ProtobufWriter(64 + message.length * 3);
  if (rejected > 0 || message) {
    w.writeTag(1, WIRE_LEN); // partial_success
    const start = w.startLengthDelimited();
    const startPos = w.pos;
    if (rejected > 0) {
      w.writeTag(1, WIRE_VARINT); // rejected_log_records
      w.writeVarint(rejected);
    }
    if (message) {
      w.writeTag(2, WIRE_LEN); // error_message
      w.writeString(message);
    }
    w.finishLengthDelimited(start, w.pos - startPos);
  }
  return w.finish();
}

/** google.rpc.Status, the body of an OTLP/HTTP error response in protobuf. code 3 = INVALID_ARGUMENT. */
export function encodeStatusProtobuf(code: number, message: string): Uint8Array {
  const w = new ProtobufWriter(16 + message.length * 3);
  w.writeTag(1, WIRE_VARINT);
  w.writeVarint(code);
  w.writeTag(2, WIRE_LEN);
  w.writeString(message);
  return w.finish();
}

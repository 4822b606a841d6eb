import { crc32, deflateRawSync, inflateRawSync } from 'node:zlib';
import { EvalError } from './errors.ts';

/** One regular file of an archive. */
export interface ZipFile {
  name: string;
  data: Buffer;
}

export interface ZipLimits {
  /** Most entries (files and directories). */
  maxEntries: number;
  /** Most bytes once inflated, all files together (also the zip-bomb bound: inflation stops there). */
  maxUnpackedBytes: number;
}

const EOCD = 0x06054b50;
const CDH = 0x02014b50;
const LFH = 0x04034b50;
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

const rejected = (message: string, field: string): EvalError => new EvalError('FORGE_ERR_AGENT_REJECTED', message, { field });

/** Why a member name is unsafe to extract, or undefined when it is a plain relative path. */
export function unsafePath(name: string): string | undefined {
  if (name.length === 0 || name.length > 255) return 'must be 1-255 characters';
  if (name.includes('\0')) return 'contains NUL';
  if (name.includes('\\')) return 'contains a backslash';
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name)) return 'is an absolute path';
  const parts = name.replace(/\/$/, '').split('/');
  if (parts.some((p) => p === '..')) return 'escapes the archive (..)';
  if (parts.some((p) => p === '' || p === '.')) return 'has an empty or "." segment';
  return undefined;
}

/**
 * Reads a ZIP held in memory: regular files and directories only (a symlink, an encrypted member, ZIP64, or a
 * name that is absolute or climbs out with `..` is refused with the member's index as `field`). Each file is
 * inflated with a hard output bound and checked against its CRC-32 and declared size.
 */
export function readZip(buf: Buffer, limits: ZipLimits): ZipFile[] {
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 0xffff); i--) {
    if (buf.readUInt32LE(i) === EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw rejected('not a ZIP archive (no end of central directory)', 'bytes');
  const count = buf.readUInt16LE(eocd + 10);
  const cdSize = buf.readUInt32LE(eocd + 12);
  const cdOffset = buf.readUInt32LE(eocd + 16);
  if (count === 0xffff || cdOffset === 0xffffffff) throw rejected('ZIP64 archives are not accepted', 'bytes');
  if (count > limits.maxEntries) throw new EvalError('FORGE_ERR_PAYLOAD_TOO_LARGE', `${count} entries, at most ${limits.maxEntries}`, { field: 'bytes' });
  if (cdOffset + cdSize > eocd) throw rejected('central directory out of bounds', 'bytes');
  const files: ZipFile[] = [];
  const seen = new Set<string>();
  let unpacked = 0;
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    const field = `entries[${i}]`;
    if (p + 46 > eocd || buf.readUInt32LE(p) !== CDH) throw rejected('corrupt central directory', field);
    const madeBy = buf.readUInt16LE(p + 4);
    const flags = buf.readUInt16LE(p + 8);
    const method = buf.readUInt16LE(p + 10);
    const crc = buf.readUInt32LE(p + 16);
    const compSize = buf.readUInt32LE(p + 20);
    const size = buf.readUInt32LE(p + 24);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    const external = buf.readUInt32LE(p + 38);
    const local = buf.readUInt32LE(p + 42);
    const name = buf.subarray(p + 46, p + 46 + nameLen).toString('utf8');
    p += 46 + nameLen + extraLen + commentLen;
    const why = unsafePath(name);
    if (why) throw rejected(`member ${JSON.stringify(name.slice(0, 100))} ${why}`, `${field}.name`);
    if (madeBy >> 8 === 3 && ((external >>> 16) & S_IFMT) === S_IFLNK) throw rejected(`member ${JSON.stringify(name)} is a symlink`, `${field}.name`);
    if (flags & 1) throw rejected(`member ${JSON.stringify(name)} is encrypted`, field);
    const key = name.replace(/\/$/, '');
    if (seen.has(key)) throw rejected(`member ${JSON.stringify(name)} appears twice`, `${field}.name`);
    seen.add(key);
    if (name.endsWith('/')) continue;
    if (compSize === 0xffffffff || size === 0xffffffff) throw rejected('ZIP64 archives are not accepted', field);
    unpacked += size;
    if (unpacked > limits.maxUnpackedBytes) throw new EvalError('FORGE_ERR_PAYLOAD_TOO_LARGE', `unpacks to more than ${limits.maxUnpackedBytes} bytes`, { field: 'bytes' });
    if (local + 30 > buf.length || buf.readUInt32LE(local) !== LFH) throw rejected('corrupt local header', field);
    const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    if (start + compSize > buf.length) throw rejected('member data out of bounds', field);
    const raw = buf.subarray(start, start + compSize);
    let data: Buffer;
    if (method === 0) data = Buffer.from(raw);
    else if (method === 8) {
      try {
        data = inflateRawSync(raw, { maxOutputLength: Math.max(1, size) });
      } catch {
        throw rejected(`member ${JSON.stringify(name)} does not inflate to its declared size`, field);
      }
    } else throw rejected(`member ${JSON.stringify(name)} uses compression method ${method} (stored or deflate only)`, field);
    if (data.length !== size || crc32(data) >>> 0 !== crc) throw rejected(`member ${JSON.stringify(name)} fails its size or CRC-32 check`, field);
    files.push({ name, data });
  }
  return files;
}

/** One member to write: a file, or (for tests of the reader's refusals) a symlink; names are written as given. */
export interface ZipInput {
  name: string;
  data: Buffer | string;
  symlink?: boolean;
}

/** Writes a ZIP (deflate) in memory: how the reference agent is packed, and how tests build hostile archives. */
export function writeZip(members: readonly ZipInput[]): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const m of members) {
    const data = Buffer.isBuffer(m.data) ? m.data : Buffer.from(m.data);
    const packed = deflateRawSync(data);
    const name = Buffer.from(m.name, 'utf8');
    const crc = crc32(data) >>> 0;
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(LFH, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt16LE(0x0800, 6);
    lh.writeUInt16LE(8, 8);
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(packed.length, 18);
    lh.writeUInt32LE(data.length, 22);
    lh.writeUInt16LE(name.length, 26);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(CDH, 0);
    ch.writeUInt16LE((3 << 8) | 20, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt16LE(0x0800, 8);
    ch.writeUInt16LE(8, 10);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(packed.length, 20);
    ch.writeUInt32LE(data.length, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt32LE(((m.symlink ? S_IFLNK | 0o777 : 0o100644) << 16) >>> 0, 38);
    ch.writeUInt32LE(offset, 42);
    locals.push(lh, name, packed);
    central.push(ch, name);
    offset += 30 + name.length + packed.length;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(EOCD, 0);
  end.writeUInt16LE(members.length, 8);
  end.writeUInt16LE(members.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

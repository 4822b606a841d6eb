import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Store } from '../store/index.ts';
import { EvalError } from './errors.ts';
import { readZip, unsafePath, writeZip, type ZipFile, type ZipInput, type ZipLimits } from './zip.ts';

/** An agent as every reader sees it (the contract with the upload UI). */
export interface AgentRecord {
  /** sha256 hex of the content: the ZIP bytes, or the image reference. */
  agent_id: string;
  tenant: string;
  name: string;
  kind: 'zip' | 'image';
  /** ZIP: its size; image: the reference's length. */
  size_bytes: number;
  /** ISO 8601 UTC. */
  created_at: string;
}

/** What the executors need beyond the record: how to start the agent. */
export interface AgentDetail extends AgentRecord {
  /** ZIP: the manifest's command (run in the unpacked directory); image: the container's args (may be empty). */
  command: string[];
  /** Image agents: the image reference; '' for ZIPs. */
  ref: string;
  file_count: number;
}

export type AgentInput = { kind: 'zip'; name: string; bytes: Buffer } | { kind: 'image'; name: string; ref: string };

/** The manifest at the root of every agent ZIP: `{ "command": ["node", "agent.mjs"] }`. */
export const AGENT_MANIFEST = 'forge-agent.json';
/** Programs a manifest may start by name (found on PATH, or Node itself); anything else is a file in the ZIP. */
export const AGENT_PROGRAMS = ['node', 'python3', 'sh', 'bash'] as const;

export interface AgentLimits extends ZipLimits {
  /** Largest ZIP accepted, bytes. */
  maxZipBytes: number;
}

export const DEFAULT_AGENT_LIMITS: AgentLimits = { maxZipBytes: 10 * 1024 * 1024, maxEntries: 1000, maxUnpackedBytes: 50 * 1024 * 1024 };

const TENANT = /^[A-Za-z0-9._-]{1,64}$/;
const AGENT_ID = /^[0-9a-f]{64}$/;
// eslint-disable-next-line no-control-regex -- refusing control characters is the point
const NAME = /^[^\u0000-\u001F\u007F-\u009F]{1,128}$/;
// The Docker distribution reference grammar: [registry[:port]/]path[:tag][@sha256:digest].
// Docker's distribution reference grammar: [registry/]path[:tag][@sha256:digest]; as Docker reads it, the
// first component is a registry only with a dot or a port, or as `localhost` (else it is a lowercase path).
const HOST_PART = '[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?';
const REGISTRY = `(?:localhost(?::[0-9]{1,5})?|${HOST_PART}(?:\\.${HOST_PART})+(?::[0-9]{1,5})?|${HOST_PART}:[0-9]{1,5})`;
const PATH_PART = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const IMAGE_REF = new RegExp(`^(?:${REGISTRY}/)?${PATH_PART}(?:/${PATH_PART})*(?::[\\w][\\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$`);

const invalid = (message: string, field: string): EvalError => new EvalError('FORGE_ERR_VALIDATION', message, { field });
const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

function checkTenant(tenant: string): void {
  if (!TENANT.test(tenant)) throw invalid(`tenant must match ${TENANT.source}`, 'tenant');
}

/** Checks an agent ZIP and returns its manifest's command and its files. Throws EvalError naming the field. */
export function inspectAgentZip(bytes: Buffer, limits: AgentLimits = DEFAULT_AGENT_LIMITS): { command: string[]; files: ZipFile[] } {
  if (bytes.length > limits.maxZipBytes) throw new EvalError('FORGE_ERR_PAYLOAD_TOO_LARGE', `the ZIP is ${bytes.length} bytes, at most ${limits.maxZipBytes}`, { field: 'bytes' });
  const files = readZip(bytes, limits);
  const manifest = files.find((f) => f.name === AGENT_MANIFEST);
  if (!manifest) throw new EvalError('FORGE_ERR_AGENT_REJECTED', `the ZIP has no ${AGENT_MANIFEST} at its root`, { field: AGENT_MANIFEST });
  let parsed: unknown;
  try {
    parsed = JSON.parse(manifest.data.toString('utf8'));
  } catch {
    throw new EvalError('FORGE_ERR_AGENT_REJECTED', `${AGENT_MANIFEST} is not JSON`, { field: AGENT_MANIFEST });
  }
  const command = (parsed as { command?: unknown } | null)?.command;
  const field = `${AGENT_MANIFEST}.command`;
  if (!Array.isArray(command) || command.length < 1 || command.length > 32 || !command.every((c) => typeof c === 'string' && c.length > 0 && c.length <= 512 && !c.includes('\0'))) {
    throw new EvalError('FORGE_ERR_AGENT_REJECTED', `${field} must be an array of 1-32 non-empty strings`, { field });
  }
  const program = command[0] as string;
  if (!(AGENT_PROGRAMS as readonly string[]).includes(program)) {
    const why = unsafePath(program.replace(/^\.\//, ''));
    if (why || !files.some((f) => f.name === program.replace(/^\.\//, ''))) {
      throw new EvalError('FORGE_ERR_AGENT_REJECTED', `${field}[0] must be one of ${AGENT_PROGRAMS.join(', ')} or a file in the ZIP`, { field: `${field}[0]` });
    }
  }
  return { command: command as string[], files };
}

interface AgentRow {
  tenant_id: string;
  agent_id: string;
  name: string;
  kind: string;
  ref: string;
  command: string[];
  size_bytes: string | number;
  file_count: number;
  created_ms: string | number;
}

/**
 * Agents per tenant: metadata in the `eval_agents` table (migration 0014), ZIP bytes on disk under
 * `<dir>/<sha256>.zip` (content-addressed: one copy however many tenants upload it). Every query names its
 * tenant; an agent of another tenant is "not found".
 */
export class AgentStore {
  readonly #store: Pick<Store, 'client' | 'database'>;
  readonly #dir: string;
  readonly #limits: AgentLimits;
  readonly #now: () => number;

  /** `dir`: where ZIPs are kept (e.g. `<FORGE_DATA_DIR>/agents`). */
  constructor(store: Pick<Store, 'client' | 'database'>, dir: string, opts: { limits?: Partial<AgentLimits>; now?: () => number } = {}) {
    this.#store = store;
    this.#dir = dir;
    this.#limits = { ...DEFAULT_AGENT_LIMITS, ...opts.limits };
    this.#now = opts.now ?? Date.now;
  }

  get limits(): AgentLimits {
    return this.#limits;
  }

  /** Validates and stores an agent; the same content again returns the record it already has. */
  async put(tenant: string, input: AgentInput): Promise<AgentDetail> {
    checkTenant(tenant);
    if (typeof input.name !== 'string' || !NAME.test(input.name)) throw invalid('name must be 1-128 characters without control characters', 'name');
    let row: Omit<AgentRow, 'created_ms'>;
    if (input.kind === 'zip') {
      if (!Buffer.isBuffer(input.bytes)) throw invalid('bytes must be the ZIP archive', 'bytes');
      const { command, files } = inspectAgentZip(input.bytes, this.#limits);
      const id = sha256(input.bytes);
      const path = this.#pathOf(id);
      if (!existsSync(path)) {
        mkdirSync(dirname(path), { recursive: true });
        // Write then rename: a reader never sees half a file, and two writers of one hash write the same bytes.
        const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
        writeFileSync(tmp, input.bytes);
        renameSync(tmp, path);
      }
      row = { tenant_id: tenant, agent_id: id, name: input.name, kind: 'zip', ref: '', command, size_bytes: input.bytes.length, file_count: files.length };
    } else if (input.kind === 'image') {
      if (typeof input.ref !== 'string' || input.ref.length > 255 || !IMAGE_REF.test(input.ref)) throw invalid('ref must be an image reference: [registry/]name[:tag][@sha256:digest]', 'ref');
      row = { tenant_id: tenant, agent_id: sha256(input.ref), name: input.name, kind: 'image', ref: input.ref, command: [], size_bytes: input.ref.length, file_count: 0 };
    } else {
      throw invalid('kind must be zip or image', 'kind');
    }
    const existing = await this.get(tenant, row.agent_id);
    if (existing) return existing;
    const created = this.#now();
    await this.#store.client.insert({
      table: `${this.#store.database}.eval_agents`,
      values: [{ ...row, created_at: created }],
      format: 'JSONEachRow',
      clickhouse_settings: { insert_deduplication_token: `${tenant}/${row.agent_id}` },
    });
    return toDetail({ ...row, created_ms: created });
  }

  async get(tenant: string, agentId: string): Promise<AgentDetail | undefined> {
    checkTenant(tenant);
    if (!AGENT_ID.test(agentId)) return undefined;
    const rows = await this.#select(tenant, 'AND agent_id = {a:String}', { a: agentId });
    return rows[0];
  }

  /** The tenant's agents, newest first. */
  async list(tenant: string): Promise<AgentDetail[]> {
    checkTenant(tenant);
    return this.#select(tenant, '', {});
  }

  /** The files of a ZIP agent (re-checked on the way out: the bytes on disk must still hash to the id). */
  async files(tenant: string, agentId: string): Promise<{ agent: AgentDetail; files: ZipFile[] }> {
    const agent = await this.get(tenant, agentId);
    if (!agent) throw new EvalError('FORGE_ERR_NOT_FOUND', `agent ${agentId} not found`, { field: 'agent_id' });
    if (agent.kind !== 'zip') return { agent, files: [] };
    const bytes = readFileSync(this.#pathOf(agentId));
    if (sha256(bytes) !== agentId) throw new EvalError('FORGE_ERR_AGENT_REJECTED', `the stored bytes of agent ${agentId} no longer match its hash`, { field: 'agent_id' });
    return { agent, files: inspectAgentZip(bytes, this.#limits).files };
  }

  #pathOf(id: string): string {
    return join(this.#dir, id.slice(0, 2), `${id}.zip`);
  }

  /** The tenant filter is in every query: one tenant never reads another's agents. */
  async #select(tenant: string, where: string, params: Record<string, unknown>): Promise<AgentDetail[]> {
    const rs = await this.#store.client.query({
      query: `SELECT tenant_id, agent_id, name, kind, ref, command, size_bytes, file_count, toUnixTimestamp64Milli(created_at) AS created_ms
FROM ${this.#store.database}.eval_agents FINAL WHERE tenant_id = {t:String} ${where} ORDER BY created_at DESC, agent_id LIMIT 1000`,
      query_params: { ...params, t: tenant },
      format: 'JSONEachRow',
    });
    return (await rs.json<AgentRow>()).map(toDetail);
  }
}

function toDetail(r: AgentRow): AgentDetail {
  return {
    agent_id: r.agent_id,
    tenant: r.tenant_id,
    name: r.name,
    kind: r.kind === 'image' ? 'image' : 'zip',
    size_bytes: Number(r.size_bytes),
    created_at: new Date(Number(r.created_ms)).toISOString(),
    command: r.command,
    ref: r.ref,
    file_count: Number(r.file_count),
  };
}

/** The reference agent shipped with the healthcare suite (eval/reference-agent). */
export const REFERENCE_AGENT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), 'reference-agent');

/** Packs a directory into an agent ZIP (regular files; a symlink is packed as one, for the store to refuse). */
export function packAgentDir(dir: string): Buffer {
  const members: ZipInput[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      const rel = relative(dir, p).split('\\').join('/');
      if (st.isSymbolicLink()) members.push({ name: rel, data: '', symlink: true });
      else if (st.isDirectory()) walk(p);
      else if (st.isFile()) members.push({ name: rel, data: readFileSync(p) });
    }
  };
  walk(dir);
  return writeZip(members);
}

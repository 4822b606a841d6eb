import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentStore, EvalError, writeZip, type ZipInput } from '../eval/index.ts';
import { openStore, type Store } from '../store/index.ts';

// The agent store on the real embedded store: metadata in eval_agents, bytes on disk by content hash.
let dir: string;
let store: Store;
let agents: AgentStore;

const manifest = { name: 'forge-agent.json', data: JSON.stringify({ command: ['node', 'agent.mjs'] }) };
const good = (extra: ZipInput[] = []): Buffer => writeZip([manifest, { name: 'agent.mjs', data: 'console.log("{}")' }, { name: 'lib/util.mjs', data: 'export {}' }, ...extra]);

async function refusal(p: Promise<unknown>): Promise<{ code: string; field: string | undefined }> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(EvalError);
  return { code: (e as EvalError).code, field: (e as EvalError).field };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'forge-eval-agents-'));
  store = await openStore({ dataDir: join(dir, 'ch') });
  agents = new AgentStore(store, join(dir, 'agents'), { limits: { maxZipBytes: 64 * 1024, maxEntries: 20, maxUnpackedBytes: 256 * 1024 } });
});

afterAll(async () => {
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('eval: agent store', () => {
  it('stores a ZIP by content hash, once, per tenant, and survives a reopen', async () => {
    const bytes = good();
    const a = await agents.put('t-a', { kind: 'zip', name: 'ref agent', bytes });
    expect(a.agent_id).toMatch(/^[0-9a-f]{64}$/);
    expect(a).toMatchObject({ tenant: 't-a', name: 'ref agent', kind: 'zip', size_bytes: bytes.length, command: ['node', 'agent.mjs'], file_count: 3 });
    const again = await agents.put('t-a', { kind: 'zip', name: 'renamed', bytes });
    expect(again.agent_id).toBe(a.agent_id);
    expect(again.created_at).toBe(a.created_at);
    expect((await agents.list('t-a')).map((x) => x.agent_id)).toEqual([a.agent_id]);
    // Another tenant does not see it, even by id.
    expect(await agents.get('t-b', a.agent_id)).toBeUndefined();
    expect(await agents.list('t-b')).toEqual([]);
    await store.close();
    store = await openStore({ dataDir: join(dir, 'ch') });
    agents = new AgentStore(store, join(dir, 'agents'), { limits: agents.limits });
    expect((await agents.get('t-a', a.agent_id))?.name).toBe('ref agent');
    const { files } = await agents.files('t-a', a.agent_id);
    expect(files.map((f) => f.name).sort()).toEqual(['agent.mjs', 'forge-agent.json', 'lib/util.mjs']);
  });

  it('refuses path escapes, absolute paths, symlinks, a missing manifest and oversize archives, storing nothing', async () => {
    const cases: Array<[ZipInput[] | Buffer, string, string | undefined]> = [
      [[manifest, { name: '../evil.sh', data: 'x' }], 'FORGE_ERR_AGENT_REJECTED', 'entries[1].name'],
      [[manifest, { name: 'a/../../evil', data: 'x' }], 'FORGE_ERR_AGENT_REJECTED', 'entries[1].name'],
      [[manifest, { name: '/etc/passwd', data: 'x' }], 'FORGE_ERR_AGENT_REJECTED', 'entries[1].name'],
      [[manifest, { name: 'C:/x', data: 'x' }], 'FORGE_ERR_AGENT_REJECTED', 'entries[1].name'],
      [[manifest, { name: 'link', data: '/etc/passwd', symlink: true }], 'FORGE_ERR_AGENT_REJECTED', 'entries[1].name'],
      [[{ name: 'agent.mjs', data: 'x' }], 'FORGE_ERR_AGENT_REJECTED', 'forge-agent.json'],
      [[{ name: 'forge-agent.json', data: '{"command":[]}' }], 'FORGE_ERR_AGENT_REJECTED', 'forge-agent.json.command'],
      [[{ name: 'forge-agent.json', data: '{"command":["./missing"]}' }], 'FORGE_ERR_AGENT_REJECTED', 'forge-agent.json.command[0]'],
      [Array.from({ length: 21 }, (_, i) => ({ name: `f${i}`, data: 'x' })), 'FORGE_ERR_PAYLOAD_TOO_LARGE', 'bytes'],
      // A small ZIP that inflates past the unpacked limit (a zip bomb in miniature).
      [[manifest, { name: 'big', data: Buffer.alloc(300 * 1024) }], 'FORGE_ERR_PAYLOAD_TOO_LARGE', 'bytes'],
      [Buffer.from('not a zip at all, just text'), 'FORGE_ERR_AGENT_REJECTED', 'bytes'],
    ];
    for (const [members, code, field] of cases) {
      const bytes = Buffer.isBuffer(members) ? members : writeZip(members);
      expect(await refusal(agents.put('t-c', { kind: 'zip', name: 'bad', bytes }))).toEqual({ code, field });
    }
    expect(await refusal(agents.put('t-c', { kind: 'zip', name: 'huge', bytes: Buffer.alloc(65 * 1024) }))).toEqual({ code: 'FORGE_ERR_PAYLOAD_TOO_LARGE', field: 'bytes' });
    expect(await refusal(agents.put('t-c', { kind: 'zip', name: '', bytes: good() }))).toEqual({ code: 'FORGE_ERR_VALIDATION', field: 'name' });
    expect(await refusal(agents.put('bad tenant', { kind: 'zip', name: 'x', bytes: good() }))).toEqual({ code: 'FORGE_ERR_VALIDATION', field: 'tenant' });
    expect(await agents.list('t-c')).toEqual([]);
  });

  it('stores image references and refuses malformed ones', async () => {
    const ok = ['ghcr.io/acme/claims-agent:1.2.0', 'localhost:5000/agent', `agent@sha256:${'a'.repeat(64)}`, 'library/ubuntu'];
    for (const ref of ok) expect((await agents.put('t-d', { kind: 'image', name: ref, ref })).kind).toBe('image');
    expect((await agents.list('t-d')).length).toBe(4);
    for (const ref of ['UPPER/case', 'a b', 'agent:', 'agent@sha256:abc', '-lead', 'x'.repeat(300)]) {
      expect(await refusal(agents.put('t-d', { kind: 'image', name: 'bad', ref }))).toEqual({ code: 'FORGE_ERR_VALIDATION', field: 'ref' });
    }
  });
});

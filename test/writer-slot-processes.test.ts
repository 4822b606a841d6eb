import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshPrefix, startRedis, type RedisServer } from './helpers/redis.ts';

// Writer slots across real OS processes on one Redis: each process holds its own slot (its stream of every
// tenant's logs), a clean stop hands the slot back to the next start, and a crashed process's slot stays
// taken until its lease runs out (the restart takes another meanwhile), never shared.
let redis: RedisServer;
const children: ChildProcess[] = [];

beforeAll(async () => {
  redis = await startRedis();
}, 30_000);
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await redis?.stop();
});

async function holder(prefix: string, ttlMs: number): Promise<{ slot: number; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/writer-slot-main.ts'], {
    env: { ...process.env, FORGE_REDIS_URL: redis.url, FORGE_REDIS_PREFIX: prefix, WRITER_SLOT_TTL_MS: String(ttlMs) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  const rl = createInterface({ input: child.stdout! });
  const [line] = (await Promise.race([once(rl, 'line'), once(child, 'exit').then(() => { throw new Error('the slot holder exited before it claimed'); })])) as [string];
  rl.close();
  return { slot: (JSON.parse(line) as { slot: number }).slot, child };
}

describe('writer slots held by OS processes', () => {
  it('two processes hold two slots; a clean stop hands its slot to the next start; a crash keeps it until the lease runs out', async () => {
    const prefix = freshPrefix('slots');
    const ttl = 4000;
    const [a, b] = await Promise.all([holder(prefix, ttl), holder(prefix, ttl)]);
    expect([a.slot, b.slot].sort()).toEqual([0, 1]);
    // Held past the lease by renewals: a third process gets neither.
    await new Promise((r) => setTimeout(r, ttl + 500));
    const c = await holder(prefix, ttl);
    expect(c.slot).toBe(2);

    // A clean stop (redeploy) of the holder of slot 1: the next start takes slot 1 back.
    const one = a.slot === 1 ? a : b;
    one.child.kill('SIGTERM');
    await once(one.child, 'exit');
    const restarted = await holder(prefix, ttl);
    expect(restarted.slot).toBe(1);

    // A crash of the holder of slot 0: its lease stands, so a start meanwhile takes a free slot, not 0...
    const zero = a.slot === 0 ? a : b;
    zero.child.kill('SIGKILL');
    await once(zero.child, 'exit');
    const meanwhile = await holder(prefix, ttl);
    expect(meanwhile.slot).toBe(3);
    // ...and once the lease ran out, slot 0 is free for the next.
    await new Promise((r) => setTimeout(r, ttl + 200));
    const later = await holder(prefix, ttl);
    expect(later.slot).toBe(0);
    for (const p of [c, restarted, meanwhile, later]) p.child.kill('SIGTERM');
    await Promise.all([c, restarted, meanwhile, later].map((p) => (p.child.exitCode === null ? once(p.child, 'exit') : undefined)));
  }, 60_000);
});

// A process holding a writer slot (guard/writer-slot.ts) on FORGE_REDIS_URL under FORGE_REDIS_PREFIX, with a
// lease of WRITER_SLOT_TTL_MS. Prints {"slot"} on its first line; SIGTERM releases the slot and exits.
import { RedisWriterSlot } from '../../guard/writer-slot.ts';

const slot = await RedisWriterSlot.claim({ url: process.env.FORGE_REDIS_URL ?? '', keyPrefix: process.env.FORGE_REDIS_PREFIX ?? 'forge:', ttlMs: Number(process.env.WRITER_SLOT_TTL_MS ?? 30_000) });
process.stdout.write(JSON.stringify({ slot: slot.stream }) + '\n');
// Renewals run on an unref'd timer: this one keeps the process alive.
const alive = setInterval(() => {}, 1000);
process.once('SIGTERM', () => {
  clearInterval(alive);
  void slot.close().then(() => process.exit(0));
});
